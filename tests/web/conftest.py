"""A real WebServer on 127.0.0.1, with the operator's side played by a recording double."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kapsa.errors import KapsaError
from kapsa.ledger import Ledger
from kapsa.web import WebServer

TOKEN = b"s3cret-webhook-token"


@dataclass
class FakeOperator:
    """What the operator answers the server: which projects exist, their tokens, readiness."""

    tokens: dict[str, bytes | None] = field(default_factory=lambda: {"web": TOKEN, "api": None})
    projects: set[str] = field(default_factory=lambda: {"web", "api"})
    polled: list[str] = field(default_factory=list)
    is_ready: bool = False
    standing_by: bool = False
    now: datetime = datetime(2025, 3, 1, 13, 0, tzinfo=UTC)

    def trigger_poll(self, project: str) -> bool:
        if self.standing_by:
            raise KapsaError("this replica is standing by")
        if project not in self.projects:
            return False
        self.polled.append(project)
        return True

    def webhook_secret(self, project: str) -> bytes | None:
        return self.tokens.get(project)

    def ready(self) -> bool:
        return self.is_ready

    def clock(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def operator() -> FakeOperator:
    return FakeOperator()


def serve(operator: FakeOperator, *, ledger: Ledger | None = None, **options: Any) -> WebServer:
    """A server on 127.0.0.1 answering for `operator`; `options` go to WebServer."""
    return WebServer(
        host="127.0.0.1",
        port=0,
        ledger=ledger,
        trigger_poll=operator.trigger_poll,
        webhook_secret=operator.webhook_secret,
        ready=operator.ready,
        clock=operator.clock,
        replay_window=timedelta(hours=1),
        **options,
    )


@pytest.fixture
def server(operator: FakeOperator) -> Iterator[WebServer]:
    with serve(operator) as running:
        yield running
