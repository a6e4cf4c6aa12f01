"""The ledger over HTTP, and `kapsa history --server` printing what `--ledger` prints."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner, Result

from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)
from kapsa.ledger import Ledger
from kapsa.web import WebServer
from tests.ledger._factory import (
    IMG1,
    IMG2,
    append_forged_web_rows,
    append_web_history,
    entry,
    minutes,
)
from tests.web.conftest import FakeOperator, serve


@pytest.fixture
def ledger_file(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger.open(url) as ledger:
        append_web_history(ledger)
        append_forged_web_rows(ledger)
        ledger.append(entry(project="other", name="other-prod", uid="uid-other", at=minutes(5)))
    yield url


@pytest.fixture
def ledger(ledger_file: str) -> Iterator[Ledger]:
    with Ledger.open(ledger_file, create=False) as opened:
        yield opened


@pytest.fixture
def api(operator: FakeOperator, ledger: Ledger) -> Iterator[WebServer]:
    with serve(operator, ledger=ledger) as running:
        yield running


def get(server: WebServer, path: str, **params: str) -> requests.Response:
    return requests.get(f"{server.internal_url}/api/v1/{path}", params=params, timeout=5)


def test_history_is_the_ledger_history_as_json(api: WebServer, ledger: Ledger) -> None:
    response = get(api, "history/web")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == [e.to_dict() for e in ledger.history(project="web")]
    assert [(r["name"], r["seq"]) for r in response.json()] == [
        ("web", 1),
        ("web-prod", 1),
        ("web-prod", 2),
        ("web-staging", 1),
    ]


def test_history_filters_by_environment_time_and_limit(api: WebServer) -> None:
    by_env = get(api, "history/web", env="web-prod")
    by_time = get(api, "history/web", since="2025-03-01T12:20:00Z", until="2025-03-01T12:35:00Z")
    newest = get(api, "history/web", limit="2")

    assert [r["seq"] for r in by_env.json()] == [1, 2]
    assert [r["at"] for r in by_time.json()] == ["2025-03-01T12:30:00Z"]
    assert [r["name"] for r in newest.json()] == ["web-prod", "web-staging"]


def test_relative_times_count_back_from_the_servers_clock(
    api: WebServer, operator: FakeOperator
) -> None:
    # The fake clock says 13:00; the last hour holds the 12:10, 12:30 and 12:40 transitions.
    response = get(api, "history/web", since="50m")

    assert [r["at"][11:16] for r in response.json()] == ["12:10", "12:30", "12:40"]


def test_deployments_from_when_to_when(api: WebServer, ledger: Ledger) -> None:
    response = get(api, "deployments/web/web-prod")

    assert response.status_code == 200
    assert response.json() == [
        d.to_dict() for d in ledger.deployments(project="web", environment="web-prod")
    ]
    assert [(d["image"], d["ended"]) for d in response.json()] == [
        (IMG1, "2025-03-01T12:30:00Z"),
        (IMG2, None),
    ]


def test_at_tells_what_ran_then(api: WebServer) -> None:
    then = get(api, "at/web/web-prod", time="2025-03-01T12:20:00Z")
    before = get(api, "at/web/web-prod", time="2025-03-01T12:05:00Z")

    assert then.json()["image"] == IMG1
    assert before.status_code == 200
    assert before.json() is None


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("history/web", {"since": "yesterday"}, "since: not a time: 'yesterday'"),
        ("history/web", {"limit": "0"}, "limit: not a positive whole number"),
        # This overflowed datetime arithmetic and answered 500 with a traceback in the log
        # (spans longer than ten years are read as ten years: kapsa.api.common.parse_duration).
        ("history/web", {"until": "0001-01-01T00:00:00+14:00"}, "until: not a time"),
        ("at/web/web-prod", {}, "give ?time="),
        # An empty value is a mistake (a script's unset variable), not "all of it".
        ("history/web", {"since": ""}, "since: empty; leave it out instead"),
        ("at/web/web-prod", {"time": ""}, "time: empty"),
        ("history/Web_App", {}, "not a Kubernetes object name"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(
    api: WebServer, path: str, params: dict[str, str], message: str
) -> None:
    response = get(api, path, **params)

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_the_api_is_read_only(api: WebServer) -> None:
    response = requests.post(f"{api.internal_url}/api/v1/history/web", data=b"{}", timeout=5)

    assert response.status_code == 405


def test_without_a_ledger_the_api_is_unavailable(server: WebServer) -> None:
    response = get(server, "history/web")

    assert response.status_code == 503
    assert response.json() == {"error": "this server has no ledger"}


# -- kapsa history --server ------------------------------------------------------------------


def kapsa(*args: str) -> Result:
    # COLUMNS: a wide terminal, so that rich does not fold the table's cells.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "KAPSA_SERVER": None})


QUERIES = [
    ("web",),
    ("web", "--env", "web-prod", "--since", "2025-03-01T12:20:00Z"),
    ("web", "--until", "2025-03-01T12:20:00", "--limit", "1"),
    ("web", "--env", "web-prod", "--deployments"),
    ("web", "--env", "web-prod", "--at", "2025-03-01T12:20:00Z"),
    ("web", "--env", "web-prod", "--at", "2025-03-01T12:05:00Z"),
    ("nobody",),
]


@pytest.mark.parametrize("query", QUERIES, ids=" ".join)
@pytest.mark.parametrize("output", ["json", "yaml", "table", "tsv"])
def test_history_over_http_prints_what_the_ledger_file_prints(
    api: WebServer, ledger_file: str, query: tuple[str, ...], output: str
) -> None:
    local = kapsa("history", *query, "--ledger", ledger_file, "-o", output)
    remote = kapsa("history", *query, "--server", api.internal_url, "-o", output)

    # `nobody` has no history: both ways say so and exit 1.
    assert local.exit_code == (1 if query == ("nobody",) else 0), local.output
    assert remote.exit_code == local.exit_code, remote.output
    assert remote.output == local.output


@pytest.mark.parametrize(
    "query",
    [
        ("web", "-o", "json"),
        ("web", "--env", "web-prod", "-o", "json"),
        ("web", "--env", "web-prod", "--deployments", "-o", "json"),
        ("web", "--env", "web-prod", "--at", "2025-03-01T12:06:00Z", "-o", "json"),
        ("web", "--env", "sneaky", "-o", "json"),
    ],
    ids=" ".join,
)
def test_rows_of_environments_claiming_the_project_from_elsewhere_are_read_by_no_one(
    api: WebServer, ledger_file: str, query: tuple[str, ...]
) -> None:
    """Attack 2's leftovers: rows written for Environments outside namespace `web` that named
    Project web. Neither the file, nor the server, nor the HTTP API hands them out."""
    local = kapsa("history", *query, "--ledger", ledger_file)
    remote = kapsa("history", *query, "--server", api.internal_url)
    args = dict(zip(query[1::2], query[2::2], strict=False))
    if "--at" in args:
        path, params = "at/web/web-prod", {"time": args["--at"]}
    elif "--deployments" in query:
        path, params = "deployments/web/web-prod", {}
    else:
        path, params = "history/web", {"env": args["--env"]} if "--env" in args else {}
    answer = get(api, path, **params)

    assert answer.status_code == 200
    for output in (local.output, remote.output, answer.text):
        assert "team-b" not in output
        assert "uid-forged" not in output and "uid-nowhere" not in output
        assert "evil.example" not in output
    assert remote.output == local.output


def test_the_server_can_come_from_the_environment(api: WebServer, ledger_file: str) -> None:
    local = kapsa("history", "web", "--ledger", ledger_file, "-o", "json")
    remote = CliRunner().invoke(
        app, ["history", "web", "-o", "json"], env={"KAPSA_SERVER": f"{api.internal_url}/"}
    )

    assert remote.exit_code == 0, remote.output
    assert remote.output == local.output


def test_an_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = kapsa("history", "web", "--server", f"http://127.0.0.1:{port}")

    assert result.exit_code == 1
    assert f"cannot reach the Kapsa server at http://127.0.0.1:{port} (connection refused)" in (
        result.output
    )
    assert "port-forward" in result.output
    assert "Traceback" not in result.output


def test_the_servers_refusal_is_shown(server: WebServer) -> None:
    result = kapsa("history", "web", "--server", server.internal_url)

    assert result.exit_code == 1
    assert f"the Kapsa server at {server.internal_url} answered 503: this server has no ledger" in (
        result.output
    )


def test_a_server_that_is_not_kapsa_is_named(tmp_path: Path) -> None:
    # Some other web server on the forwarded port, answering HTML where Kapsa answers JSON.
    page = tmp_path / "api" / "v1" / "history" / "web"
    page.parent.mkdir(parents=True)
    page.write_text("<html>hello</html>")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    other = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05}).start()
    url = f"http://127.0.0.1:{other.server_address[1]}"
    try:
        result = kapsa("history", "web", "--server", url)
    finally:
        other.shutdown()
        other.server_close()

    assert result.exit_code == 1
    assert f"did not answer JSON; is {url} the Kapsa operator?" in result.output
    assert "Traceback" not in result.output


def test_the_server_must_be_an_http_url() -> None:
    result = kapsa("history", "web", "--server", "localhost:8080")

    assert result.exit_code == 2
    assert "not an http(s) URL" in result.output
