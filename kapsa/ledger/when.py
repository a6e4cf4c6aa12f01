"""Points in time as people type them: ISO 8601, or a span ago such as `2h`, `30m`, `1d12h`."""

from __future__ import annotations

from datetime import UTC, datetime

from kapsa.api.common import parse_duration
from kapsa.errors import InvalidSpecError


def parse_when(text: str, *, now: datetime) -> datetime:
    """An aware UTC datetime; an ISO time without a zone is read as UTC, like the ledger prints.

    Shared by the CLI and the HTTP server so that `--since 2h` and `?since=2h` agree; a span is
    written as every duration in Kapsa is (kapsa.api.common.parse_duration).
    """
    text = text.strip()
    try:
        return (now - parse_duration(text)).astimezone(UTC)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: 0001-01-01 in a zone east of UTC.
        raise InvalidSpecError(
            f"not a time: {text[:80]!r} (use ISO 8601 like 2024-05-01T12:00Z, or a span ago "
            "like 2h)"
        ) from None
