"""`kapsa history`: what happened to a project, read from the audit ledger.

Tables for people (newest last, so the latest is next to the prompt), `-o json` for scripts.
The queries and their JSON shape live in kapsa.ledger, which the HTTP server reuses; with
`--server` the same queries go to the operator's internal HTTP listener, so that a user with
`kubectl -n kapsa-system port-forward deployment/kapsa 8081` needs neither the ledger file nor a
shell in the pod. Both ways (kapsa.cli.ledger_client) return the same JSON, and the tables are
printed from it, so they print the same thing.
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kapsa.cli import app
from kapsa.cli.ledger_client import SERVER_HELP, LedgerQuery, ServerError, read
from kapsa.errors import InvalidSpecError, LedgerError
from kapsa.ledger import DEFAULT_URL, Deployment, Entry, parse_when


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


TIME_HELP = "ISO 8601 (UTC unless it names a zone) or a span ago: 30m, 2h, 1d."


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
    query = LedgerQuery(project=project, env=env, since=start, until=end, limit=limit, at=when)
    try:
        data = read(query, deployments=deployments, ledger_url=ledger_url, server=server)
    except (LedgerError, ServerError) as exc:
        typer.echo(f"kapsa history: {exc}", err=True)
        raise typer.Exit(code=1) from None
    _show(data, _view(data, query=query, deployments=deployments), output=output)


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


def _view(data: Any, *, query: LedgerQuery, deployments: bool) -> Table | str:
    if query.env is not None and query.at is not None:
        if data is None:
            return f"nothing ran in {query.env} at {_time(query.at)}"
        return _deployments_table([_deployment(data)])
    if query.env is not None and deployments:
        return _deployments_table([_deployment(d) for d in data])
    return _entries_table([_entry(e) for e in data])
