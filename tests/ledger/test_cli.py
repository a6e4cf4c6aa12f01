"""`kapsa history` as people and scripts call it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)
from kapsa.ledger import Ledger
from tests.ledger._factory import IMG1, IMG2, append_web_history


def kapsa(*args: str, env: dict[str, str] | None = None) -> Result:
    # COLUMNS: a wide terminal, so that rich does not fold the table's cells.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})})


@pytest.fixture
def filled(ledger_url: str) -> str:
    with Ledger.open(ledger_url) as ledger:
        append_web_history(ledger)
    return ledger_url


def test_json_lists_the_project_history_oldest_first(filled: str) -> None:
    result = kapsa("history", "web", "--ledger", filled, "-o", "json")

    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["name"], r["seq"]) for r in rows] == [
        ("web", 1),
        ("web-prod", 1),
        ("web-prod", 2),
        ("web-staging", 1),
    ]
    assert rows[2]["at"] == "2025-03-01T12:30:00Z"
    assert rows[2]["source"] == "webhook"


def test_json_filters_by_environment_and_time(filled: str) -> None:
    result = kapsa(
        "history",
        "web",
        "--env",
        "web-prod",
        "--since",
        "2025-03-01T12:20:00Z",
        "--ledger",
        filled,
        "-o",
        "json",
    )

    assert result.exit_code == 0, result.output
    assert [r["seq"] for r in json.loads(result.output)] == [2]


def test_relative_times_count_back_from_now(filled: str) -> None:
    # The scripted history is in 2025: nothing happened in the last two hours.
    result = kapsa("history", "web", "--since", "2h", "--ledger", filled, "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_table_shows_transitions_newest_last(filled: str) -> None:
    result = kapsa("history", "web", "--env", "web-prod", "--ledger", filled)

    assert result.exit_code == 0, result.output
    first, second = result.output.index("12:10:00"), result.output.index("12:30:00")
    assert first < second
    assert "Pending -> Running" in result.output
    assert "NewImage" in result.output
    assert "c2c2c2c2c2c2" in result.output


def test_deployments_from_when_to_when(filled: str) -> None:
    as_json = kapsa(
        "history", "web", "--env", "web-prod", "--deployments", "--ledger", filled, "-o", "json"
    )
    as_table = kapsa("history", "web", "--env", "web-prod", "--deployments", "--ledger", filled)

    assert as_json.exit_code == 0, as_json.output
    spans = json.loads(as_json.output)
    assert [(d["image"], d["started"], d["ended"]) for d in spans] == [
        (IMG1, "2025-03-01T12:10:00Z", "2025-03-01T12:30:00Z"),
        (IMG2, "2025-03-01T12:30:00Z", None),
    ]
    assert as_table.exit_code == 0, as_table.output
    assert "running" in as_table.output
    assert IMG2 in as_table.output


def test_at_tells_what_ran_then(filled: str) -> None:
    base = ("history", "web", "--env", "web-prod", "--ledger", filled)

    then = kapsa(*base, "--at", "2025-03-01T12:20:00Z", "-o", "json")
    before = kapsa(*base, "--at", "2025-03-01T12:05:00", "-o", "json")
    table = kapsa(*base, "--at", "2025-03-01T12:05:00")

    assert json.loads(then.output)["image"] == IMG1
    assert json.loads(before.output) is None
    assert "nothing ran in web-prod" in table.output


def test_the_ledger_url_comes_from_the_environment(filled: str) -> None:
    result = kapsa("history", "web", "-o", "json", env={"KAPSA_LEDGER_URL": filled})

    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 4


def test_a_missing_ledger_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ledger.db"

    result = kapsa("history", "web", "--ledger", f"sqlite:///{missing}")

    assert result.exit_code == 1
    assert f"no ledger at {missing}" in result.output
    assert "Traceback" not in result.output
    assert not missing.parent.exists()


def test_an_unreachable_ledger_is_a_clear_error() -> None:
    # Port 9 (discard) on 127.0.0.1: nothing listens there, the connection is refused.
    result = kapsa("history", "web", "--ledger", "postgresql+psycopg://kapsa:secret@127.0.0.1:9/x")

    assert result.exit_code == 1
    assert "could not open the ledger at postgresql+psycopg://kapsa:***@127.0.0.1:9/x" in (
        result.output
    )
    assert "secret" not in result.output
    assert "Traceback" not in result.output


def test_a_bad_time_is_refused_with_a_hint(filled: str) -> None:
    result = kapsa("history", "web", "--since", "yesterday", "--ledger", filled)

    assert result.exit_code == 2
    assert "not a time: 'yesterday'" in result.output


def test_at_needs_an_environment(filled: str) -> None:
    result = kapsa("history", "web", "--at", "1h", "--ledger", filled)

    assert result.exit_code == 2
    assert "--env" in result.output
