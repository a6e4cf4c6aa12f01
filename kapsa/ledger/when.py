"""Points in time as people type them: ISO 8601, or a span ago such as `2h`, `30m`, `1d12h`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from kapsa.errors import InvalidSpecError

_SPAN = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, now: datetime) -> datetime:
    """An aware UTC datetime; an ISO time without a zone is read as UTC, like the ledger prints.

    Shared by the CLI and the HTTP server so that `--since 2h` and `?since=2h` agree.
    """
    text = text.strip()
    try:
        if _SPAN.fullmatch(text):
            seconds = sum(float(n) * _SECONDS[unit] for n, unit in _PART.findall(text))
            return (now - timedelta(seconds=seconds)).astimezone(UTC)
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: a span reaching before year 1, or 0001-01-01 in a zone east of UTC.
        raise InvalidSpecError(
            f"not a time: {text[:80]!r} (use ISO 8601 like 2024-05-01T12:00Z, or a span ago "
            "like 2h, after the year 1)"
        ) from None
