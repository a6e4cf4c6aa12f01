"""A ledger per test, opened on each backend by `ledger_url` (tests/plugins/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kapsa.ledger import Ledger


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_url) as opened:
        yield opened
