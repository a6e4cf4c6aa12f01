"""Entries as the reconciler would write them, with only what a test cares about spelled out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kapsa.ledger import Entry, Ledger

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def entry(**fields: Any) -> Entry:
    """An Environment `web-prod` of Project `web` moving Pending -> Building, unless overridden."""
    base = Entry(
        at=T0,
        kind="Environment",
        namespace="team-a",
        name="web-prod",
        project="web",
        uid="uid-web-prod",
        seq=1,
        from_state="Pending",
        to_state="Building",
        trigger="build",
        reason="NewCommit",
        message="building the new head of main",
    )
    return replace(base, **fields)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


IMG1 = "registry.local/web@sha256:1111"
IMG2 = "registry.local/web@sha256:2222"


def append_web_history(ledger: Ledger) -> None:
    """Project `web`: created, Running on c1 at 10 min, on c2 at 30 min (a webhook), and a
    `web-staging` environment at 40 min: the history the CLI and HTTP tests read back."""
    ledger.append(entry(kind="Project", name="web", uid="uid-web", at=minutes(0)))
    ledger.append(entry(seq=1, to_state="Running", commit="c1" * 20, image=IMG1, at=minutes(10)))
    ledger.append(
        entry(
            seq=2,
            from_state="Running",
            to_state="Running",
            reason="NewImage",
            commit="c2" * 20,
            image=IMG2,
            at=minutes(30),
            source="webhook",
        )
    )
    ledger.append(entry(name="web-staging", uid="uid-staging", at=minutes(40)))
