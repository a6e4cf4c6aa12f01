"""Entries as the reconciler would write them, with only what a test cares about spelled out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kapsa.ledger import Entry

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
