"""Durations on the command line, written as everywhere in Kapsa: `90s`, `5m`, `1h30m`, `7d`.

Every option that takes a span of time (`--timeout`, `--min-ready`, `--resync`) parses it here,
with the parser the CRDs' fields use, so what works in a Project works on the command line.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from kapsa.api.common import DURATION_EXAMPLES, parse_duration


def duration(text: str | timedelta) -> timedelta:
    """The option's value as a timedelta; a usage error (exit 2) naming the syntax otherwise."""
    if isinstance(text, timedelta):  # a default, already parsed
        return text
    try:
        value = parse_duration(text)
    except ValueError:
        raise typer.BadParameter(f"not a duration: {text!r} ({DURATION_EXAMPLES})") from None
    return value


def written(value: timedelta) -> str:
    """A span as people read it back in messages: `90s`, `2m`, `1h30m`."""
    total = round(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or f"{value.total_seconds():g}s"


#: How long a command waits for the operator's answer, as `--timeout 2m`.
DEFAULT_TIMEOUT = timedelta(minutes=2)
Timeout = Annotated[
    timedelta,
    typer.Option(
        parser=duration,
        metavar="DURATION",
        show_default="2m",
        help="How long to wait for the operator's answer.",
    ),
]
