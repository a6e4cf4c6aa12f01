"""`kapsa history`: what happened to a project, read from the audit ledger.

Tables for people (newest last, so the latest is next to the prompt), `-o json` for scripts.
The queries and their JSON shape live in kapsa.ledger, which the HTTP server reuses; with
`--server` the same queries go to the operator's HTTP port, so that a user with
`kubectl port-forward svc/kapsa 8080` needs neither the ledger file nor a shell in the pod. Both
ways print from the same JSON, so they print the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import requests
import typer
from rich.console import Console
from rich.table import Table

from kapsa.cli import app
from kapsa.errors import InvalidSpecError, LedgerError
from kapsa.ledger import DEFAULT_URL, Deployment, Entry, Ledger, parse_when
from kapsa.ledger.records import iso


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


TIME_HELP = "ISO 8601 (UTC unless it names a zone) or a span ago: 30m, 2h, 1d."
SERVER_HELP = (
    "Read over HTTP from the operator instead of the ledger file, e.g. http://localhost:8080 "
    "after `kubectl port-forward svc/kapsa 8080`."
)
#: Connecting is quick or hopeless (a port-forward that is not running); a long history may take
#: a while to read and send.
TIMEOUT = (5.0, 60.0)


def _when(text: str | None, *, option: str, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, now=now)
    except InvalidSpecError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(commit: str | None) -> str:
    return "-" if commit is None else commit[:12]


def _entries_table(entries: list[Entry]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("TIME", "OBJECT", "SEQ", "TRANSITION", "TRIGGER", "REASON", "COMMIT"):
        table.add_column(column, no_wrap=column != "REASON")
    table.add_column("IMAGE", overflow="fold")
    table.add_column("SOURCE")
    table.add_column("MESSAGE", overflow="fold")
    for e in entries:
        table.add_row(
            _time(e.at),
            f"{e.kind}/{e.name}",
            str(e.seq),
            f"{e.from_state} -> {e.to_state}",
            e.trigger,
            e.reason,
            _short(e.commit),
            e.image or "-",
            e.source or "-",
            e.message,
        )
    return table


def _deployments_table(deployments: list[Deployment]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("STARTED", "ENDED", "READY", "COMMIT"):
        table.add_column(column, no_wrap=True)
    table.add_column("IMAGE", overflow="fold")
    table.add_column("REASON")
    for d in deployments:
        table.add_row(
            _time(d.started),
            "running" if d.ended is None else _time(d.ended),
            "yes" if d.ready else "no",
            _short(d.commit),
            d.image or "-",
            d.entry.reason,
        )
    return table


def _show(data: Any, table: Table | str, *, output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        Console(soft_wrap=False).print(table)


@app.command()
def history(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    env: Annotated[
        str | None, typer.Option("--env", help="One environment (its metadata.name).")
    ] = None,
    since: Annotated[str | None, typer.Option(help=f"From this time on. {TIME_HELP}")] = None,
    until: Annotated[str | None, typer.Option(help=f"Up to this time. {TIME_HELP}")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the newest N transitions.")] = None,
    at: Annotated[
        str | None, typer.Option("--at", help=f"What ran in --env at this time. {TIME_HELP}")
    ] = None,
    deployments: Annotated[
        bool, typer.Option("--deployments", help="Each image that ran in --env, from when to when.")
    ] = False,
    ledger_url: Annotated[
        str, typer.Option("--ledger", envvar="KAPSA_LEDGER_URL", help="The ledger's URL.")
    ] = DEFAULT_URL,
    server: Annotated[
        str | None, typer.Option("--server", envvar="KAPSA_SERVER", help=SERVER_HELP)
    ] = None,
    output: Annotated[Output, typer.Option("-o", "--output", help="table or json.")] = Output.TABLE,
) -> None:
    """Show a project's transitions, its deployments, or what ran at a given time."""
    now = datetime.now(UTC)
    if (at is not None or deployments) and env is None:
        raise typer.BadParameter("--at and --deployments need --env", param_hint="--env")
    if at is not None and deployments:
        raise typer.BadParameter("choose one of --at and --deployments", param_hint="--at")
    when = _when(at, option="--at", now=now)
    start, end = _when(since, option="--since", now=now), _when(until, option="--until", now=now)
    query = _Query(project=project, env=env, since=start, until=end, limit=limit, at=when)
    try:
        if server is not None:
            data = _from_server(_server_url(server), query=query, deployments=deployments)
        else:
            data = _from_ledger(ledger_url, query=query, deployments=deployments)
    except (LedgerError, _ServerError) as exc:
        typer.echo(f"kapsa history: {exc}", err=True)
        raise typer.Exit(code=1) from None
    _show(data, _view(data, query=query, deployments=deployments), output=output)


@dataclass(frozen=True, kw_only=True)
class _Query:
    """What was asked, with the times already resolved against this machine's clock."""

    project: str
    env: str | None
    since: datetime | None
    until: datetime | None
    limit: int | None
    at: datetime | None


class _ServerError(Exception):
    """The operator's HTTP port could not be read; the message says what to do."""


def _from_ledger(url: str, *, query: _Query, deployments: bool) -> Any:
    with Ledger.open(url, create=False) as ledger:
        if query.env is not None and query.at is not None:
            found = ledger.at(project=query.project, environment=query.env, when=query.at)
            return None if found is None else found.to_dict()
        if query.env is not None and deployments:
            spans = ledger.deployments(project=query.project, environment=query.env)
            return [d.to_dict() for d in spans]
        entries = ledger.history(
            project=query.project,
            environment=query.env,
            since=query.since,
            until=query.until,
            limit=query.limit,
        )
        return [e.to_dict() for e in entries]


def _server_url(text: str) -> str:
    url = urlsplit(text)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise typer.BadParameter(
            f"not an http(s) URL: {text!r} (e.g. http://localhost:8080)", param_hint="--server"
        )
    return text.rstrip("/")


def _from_server(server: str, *, query: _Query, deployments: bool) -> Any:
    project = quote(query.project, safe="")
    params: dict[str, str] = {}
    if query.env is not None and query.at is not None:
        path = f"at/{project}/{quote(query.env, safe='')}"
        params["time"] = iso(query.at) or ""
    elif query.env is not None and deployments:
        path = f"deployments/{project}/{quote(query.env, safe='')}"
    else:
        path = f"history/{project}"
        optional = {"env": query.env, "since": iso(query.since), "until": iso(query.until)}
        params.update({key: value for key, value in optional.items() if value is not None})
        if query.limit is not None:
            params["limit"] = str(query.limit)
    url = f"{server}/api/v1/{path}"
    try:
        response = requests.get(url, params=params, timeout=TIMEOUT)
    except requests.ConnectionError as exc:
        raise _ServerError(
            f"cannot reach the Kapsa server at {server} ({_root_cause(exc)}); "
            "is `kubectl port-forward svc/kapsa 8080` running?"
        ) from None
    except requests.Timeout:
        raise _ServerError(f"the Kapsa server at {server} did not answer in time") from None
    except requests.RequestException as exc:
        raise _ServerError(f"cannot read {url}: {_root_cause(exc)}") from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        message = data.get("error") if isinstance(data, dict) else None
        raise _ServerError(
            f"the Kapsa server at {server} answered {response.status_code}: "
            f"{message or response.reason}"
        )
    if data is None and response.text.strip() != "null":
        raise _ServerError(f"{url} did not answer JSON; is {server} the Kapsa operator?")
    return data


def _root_cause(exc: BaseException) -> str:
    """The innermost OS error (`connection refused`), not urllib3's retry wrapping."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _entry(data: dict[str, Any]) -> Entry:
    known = {field.name for field in fields(Entry)}
    values = {key: value for key, value in data.items() if key in known}
    return Entry(**{**values, "at": datetime.fromisoformat(data["at"])})


def _deployment(data: dict[str, Any]) -> Deployment:
    ended = data.get("ended")
    return Deployment(
        commit=data.get("commit"),
        image=data.get("image"),
        started=datetime.fromisoformat(data["started"]),
        ended=None if ended is None else datetime.fromisoformat(ended),
        ready=bool(data.get("ready")),
        entry=_entry(data["entry"]),
    )


def _view(data: Any, *, query: _Query, deployments: bool) -> Table | str:
    if query.env is not None and query.at is not None:
        if data is None:
            return f"nothing ran in {query.env} at {_time(query.at)}"
        return _deployments_table([_deployment(data)])
    if query.env is not None and deployments:
        return _deployments_table([_deployment(d) for d in data])
    return _entries_table([_entry(e) for e in data])
