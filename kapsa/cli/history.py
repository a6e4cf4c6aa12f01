"""`kapsa history`: what happened to a project, read from the audit ledger.

Tables for people (newest last, so the latest is next to the prompt), every column in a pipe,
`-o json|yaml` for scripts (kapsa.cli.output). The queries and their JSON shape live in
kapsa.ledger, which the HTTP server reuses; with `--server` the same queries go to the
operator's internal HTTP listener, so that a user with
`kubectl -n kapsa-system port-forward deployment/kapsa 8081` needs neither the ledger file nor a
shell in the pod. Both ways (kapsa.cli.ledger_client) return the same JSON, and the tables are
printed from it, so they print the same thing.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from kapsa.cli import app
from kapsa.cli.ledger_client import SERVER_HELP, LedgerQuery, ServerError, read
from kapsa.cli.output import OUTPUT_HELP, Column, Output, show
from kapsa.errors import InvalidSpecError, LedgerError
from kapsa.ledger import DEFAULT_URL, Deployment, Entry, parse_when

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


ENTRY_COLUMNS = (
    Column(header="TIME"),
    Column(header="OBJECT"),
    Column(header="SEQ", drop=3),
    Column(header="TRANSITION"),
    Column(header="TRIGGER", drop=4),
    Column(header="REASON"),
    Column(header="COMMIT", drop=5),
    Column(header="IMAGE", fold=True, drop=1),
    Column(header="SOURCE", drop=2),
    Column(header="MESSAGE", fold=True),
)
DEPLOYMENT_COLUMNS = (
    Column(header="RELEASE"),
    Column(header="STARTED"),
    Column(header="ENDED"),
    Column(header="READY"),
    Column(header="COMMIT"),
    Column(header="IMAGE", fold=True, drop=1),
    Column(header="REASON"),
)


def _entry_row(e: Entry) -> list[str]:
    return [
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
    ]


def _deployment_row(d: Deployment) -> list[str]:
    return [
        str(d.release),
        _time(d.started),
        "running" if d.ended is None else _time(d.ended),
        "yes" if d.ready else "no",
        _short(d.commit),
        d.image or "-",
        d.entry.reason,
    ]


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
    output: Annotated[Output | None, typer.Option("-o", "--output", help=OUTPUT_HELP)] = None,
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
        if not data:
            _refuse_unknown(query, ledger_url=ledger_url, server=server)
    except (LedgerError, ServerError) as exc:
        hint = ""
        if server is None and ledger_url == DEFAULT_URL:
            hint = (
                "; to read it from the operator instead, run `kubectl -n kapsa-system port-forward "
                "deployment/kapsa 8081` and add --server http://localhost:8081"
            )
        typer.echo(f"kapsa history: {exc}{hint}", err=True)
        raise typer.Exit(code=1) from None
    if query.env is not None and query.at is not None:
        if data is None and output not in (Output.JSON, Output.YAML):
            typer.echo(f"nothing ran in {query.env} at {_time(query.at)}", err=True)
            return
        spans = [] if data is None else [_deployment(data)]
    elif query.env is not None and deployments:
        spans = [_deployment(d) for d in data]
    else:
        rows = [_entry_row(_entry(e)) for e in data]
        show(data, columns=ENTRY_COLUMNS, rows=rows, output=output, command="kapsa history")
        return
    rows = [_deployment_row(d) for d in spans]
    show(data, columns=DEPLOYMENT_COLUMNS, rows=rows, output=output, command="kapsa history")


def _refuse_unknown(query: LedgerQuery, *, ledger_url: str, server: str | None) -> None:
    """An empty answer about a name the ledger never saw is a typo, said so and exit 1.

    A window or an instant with nothing in it is a fine answer; a project (or environment)
    with no transition at all is not, and a script piping the output must be able to tell.
    """
    scopes = [None] if query.env is None else [None, query.env]
    for env in scopes:
        probe = LedgerQuery(project=query.project, env=env, limit=1)
        if not read(probe, deployments=False, ledger_url=ledger_url, server=server):
            where = query.project if env is None else f"{env} in {query.project}"
            typer.echo(f"no history for {where}", err=True)
            raise typer.Exit(code=1)


def _entry(data: dict[str, Any]) -> Entry:
    known = {field.name for field in fields(Entry)}
    values = {key: value for key, value in data.items() if key in known}
    return Entry(**{**values, "at": datetime.fromisoformat(data["at"])})


def _deployment(data: dict[str, Any]) -> Deployment:
    ended = data.get("ended")
    return Deployment(
        release=int(data["release"]),
        commit=data.get("commit"),
        image=data.get("image"),
        started=datetime.fromisoformat(data["started"]),
        ended=None if ended is None else datetime.fromisoformat(ended),
        ready=bool(data.get("ready")),
        entry=_entry(data["entry"]),
    )
