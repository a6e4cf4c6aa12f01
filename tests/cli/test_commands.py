"""The `kapsa` command itself: help, version, and bad input answered without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner, Result

from kapsa.api.common import DURATION_PATTERN, parse_duration
from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)
from kapsa.cli.durations import duration, written
from kapsa.ledger import parse_when


def kapsa(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_version_prints_the_installed_version() -> None:
    result = kapsa("--version")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"kapsa {version('kapsa')}"


@pytest.mark.parametrize("args", [("-h",), ("history", "-h"), ("rollback", "-h")])
def test_h_is_help(args: tuple[str, ...]) -> None:
    result = kapsa(*args)

    assert result.exit_code == 0, result.output
    assert "Usage: kapsa" in result.stdout


def test_an_unknown_log_level_is_a_usage_error_naming_the_choices() -> None:
    result = kapsa("operator", "--log-level", "FOO")

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "'FOO' is not one of" in result.output
    assert "debug" in result.output


OPERATOR_ARGS = ("operator", "--log-level", "debug", "--ledger", "garbage")


def test_the_operator_refuses_a_bad_ledger_url_in_one_line() -> None:
    # In a process of its own: the operator sets up logging on the process's stderr.
    # The level is read case-insensitively; the ledger is opened before anything else starts.
    result = subprocess.run(
        [sys.executable, "-c", "from kapsa.cli import main; main()", *OPERATOR_ARGS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("kapsa operator: not a ledger URL")
    assert "Traceback" not in result.stderr


# -- one duration syntax ----------------------------------------------------------------------

GOOD = ["90s", "5m", "1h30m", "168h", "7d", "2w", "1.5h", "250ms"]
BAD = ["120", "10x", "1 h", "", "h", "-5m"]


@pytest.mark.parametrize("text", GOOD)
def test_every_place_accepts_the_same_durations(text: str) -> None:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    span = parse_duration(text)

    assert re.fullmatch(DURATION_PATTERN, text), "the CRDs' pattern"
    assert duration(text) == span, "the command line's options"
    assert parse_when(text, now=now) == now - span, "--since and --until"


@pytest.mark.parametrize("text", BAD)
def test_every_place_refuses_the_same_durations(text: str) -> None:
    assert not re.fullmatch(DURATION_PATTERN, text)
    with pytest.raises(typer.BadParameter, match="not a duration"):
        duration(text)


def test_durations_add_up() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert written(timedelta(minutes=90)) == "1h30m"


@pytest.mark.parametrize(
    "args",
    [
        ("promote", "api", "dev", "prod", "--timeout", "120"),
        ("promote", "api", "dev", "prod", "--min-ready", "10x"),
        ("rollback", "api", "dev", "--timeout", "2 minutes"),
        ("operator", "--resync", "600"),
    ],
)
def test_a_bad_duration_option_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = kapsa(*args)

    assert result.exit_code == 2
    assert "not a duration" in result.output
    assert "Traceback" not in result.output
