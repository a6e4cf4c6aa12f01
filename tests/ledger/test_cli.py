"""`kapsa history` as people and scripts call it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)
from kapsa.cli.release import release_commit
from kapsa.errors import KapsaError
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


# -- output that keeps every column ---------------------------------------------------------

ENTRY_HEADER = [
    "TIME",
    "OBJECT",
    "SEQ",
    "TRANSITION",
    "TRIGGER",
    "REASON",
    "COMMIT",
    "IMAGE",
    "SOURCE",
    "MESSAGE",
]


def test_a_pipe_gets_every_column_whole_as_tsv(filled: str) -> None:
    # CliRunner's stdout is no terminal, like `kapsa history web | grep NewImage`.
    result = CliRunner().invoke(app, ["history", "web", "--ledger", filled], env={"COLUMNS": "40"})

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ENTRY_HEADER
    fields = next(line for line in lines if "NewImage" in line).split("\t")
    assert dict(zip(ENTRY_HEADER, fields, strict=True)) == {
        "TIME": "2025-03-01 12:30:00Z",
        "OBJECT": "Environment/web-prod",
        "SEQ": "2",
        "TRANSITION": "Running -> Running",
        "TRIGGER": "build",
        "REASON": "NewImage",
        "COMMIT": "c2c2c2c2c2c2",
        "IMAGE": IMG2,
        "SOURCE": "webhook",
        "MESSAGE": "building the new head of main",
    }
    assert "…" not in result.output


def test_wide_keeps_every_column_aligned_however_narrow_the_terminal(filled: str) -> None:
    result = CliRunner().invoke(
        app, ["history", "web", "--ledger", filled, "-o", "wide"], env={"COLUMNS": "40"}
    )

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ENTRY_HEADER
    assert len(rows) == 4
    assert all(IMG2 in row for row in rows if "NewImage" in row)
    assert all(row.rstrip().endswith("building the new head of main") for row in rows)
    assert "…" not in result.output


def test_yaml_is_the_same_data_as_json(filled: str) -> None:
    as_yaml = kapsa("history", "web", "--ledger", filled, "-o", "yaml")
    as_json = kapsa("history", "web", "--ledger", filled, "-o", "json")

    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)


def _on_a_terminal(*args: str, columns: int) -> tuple[str, str]:
    """stdout and stderr of `kapsa ARGS` with stdout on a pseudo-terminal `columns` wide."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-c", "from kapsa.cli import main; main()", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**env, "NO_COLOR": "1", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, err = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 0, err
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode())  # bold headers
    return text.replace("\r\n", "\n"), err.decode()


@pytest.mark.parametrize("columns", [100, 60])
def test_a_narrow_terminal_keeps_reason_and_message_and_names_what_it_left_out(
    filled: str, columns: int
) -> None:
    out, err = _on_a_terminal("history", "web", "--ledger", filled, columns=columns)

    header = out.splitlines()[0].split()
    assert {"TIME", "OBJECT", "TRANSITION", "REASON", "MESSAGE"} <= set(header)
    assert all(len(line) <= columns for line in out.splitlines())
    left_out = [h for h in ENTRY_HEADER if h not in header]
    assert left_out, "the test's rows are meant to be wider than the terminal"
    assert f"{', '.join(left_out)} left out to fit {columns} columns" in err
    assert "-o wide" in err
    assert "NewImage" in out


def test_a_wide_terminal_shows_everything_and_says_nothing(filled: str) -> None:
    out, err = _on_a_terminal("history", "web", "--ledger", filled, columns=250)

    assert out.splitlines()[0].split() == ENTRY_HEADER
    assert err == ""


# -- names the ledger never saw ---------------------------------------------------------------


def test_a_project_without_history_is_an_error_on_stderr(filled: str) -> None:
    result = kapsa("history", "nosuch", "--ledger", filled)

    assert result.exit_code == 1
    assert result.stderr.strip() == "no history for nosuch"
    assert result.stdout == ""


def test_an_environment_without_history_is_an_error_too(filled: str) -> None:
    result = kapsa("history", "web", "--env", "web-nope", "--deployments", "--ledger", filled)

    assert result.exit_code == 1
    assert "no history for web-nope in web" in result.stderr


def test_a_window_with_nothing_in_it_is_an_empty_answer_not_an_error(filled: str) -> None:
    result = kapsa("history", "web", "--since", "2025-03-02T00:00Z", "--ledger", filled)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["\t".join(ENTRY_HEADER)]


# -- one release numbering ----------------------------------------------------------------------


def test_deployments_show_the_release_numbers_other_commands_take(filled: str) -> None:
    base = ("history", "web", "--env", "web-prod", "--deployments", "--ledger", filled)

    table = kapsa(*base, "-o", "tsv")
    spans = json.loads(kapsa(*base, "-o", "json").stdout)

    header, *rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert header[0] == "RELEASE"
    assert [(row[0], row[header.index("IMAGE")]) for row in rows] == [("1", IMG1), ("2", IMG2)]
    assert [s["release"] for s in spans] == [1, 2]


def test_rollback_counts_in_the_same_numbering(filled: str) -> None:
    spans = json.loads(
        kapsa(
            "history", "web", "--env", "web-prod", "--deployments", "--ledger", filled, "-o", "json"
        ).stdout
    )

    assert release_commit(spans, release=1, steps=None, env="web-prod") == (1, "c1" * 20)
    assert release_commit(spans, release=None, steps=1, env="web-prod") == (1, "c1" * 20)
    assert release_commit(spans, release=None, steps=None, env="web-prod") == (1, "c1" * 20)
    with pytest.raises(KapsaError, match="runs now"):
        release_commit(spans, release=2, steps=None, env="web-prod")
    with pytest.raises(KapsaError, match="has releases 1 to 2, not 0"):
        release_commit(spans, release=None, steps=2, env="web-prod")


# -- errors a person can act on ---------------------------------------------------------------


def test_a_ledger_url_that_is_no_url_is_a_clear_error() -> None:
    result = kapsa("history", "web", "--ledger", "garbage")

    assert result.exit_code == 1
    assert "not a ledger URL (expected sqlite:////" in result.stderr
    assert "Traceback" not in result.output


def test_the_missing_default_ledger_points_to_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAPSA_LEDGER_URL", raising=False)
    monkeypatch.delenv("KAPSA_SERVER", raising=False)

    result = kapsa("history", "web")

    assert result.exit_code == 1
    assert "--server http://localhost:8081" in result.stderr
    assert "kubectl -n kapsa-system port-forward deployment/kapsa 8081" in result.stderr
