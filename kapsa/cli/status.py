"""`kapsa status` and `kapsa reconcile`: one Project on one screen, and a reconcile right now.

`kubectl get project,environment` shows a line per object; what a person asks first is about
the Project as a whole (what each environment runs and where, whether it is Ready and why, which
previews exist and when they go), as `flux get` or `argocd app get` answer it. Everything here is
read from the objects' status, so it shows what the operator last wrote, nothing computed anew.

`kapsa reconcile` sets the kapsa.io/reconcile-requested-at annotation, as `flux reconcile` does
its own: the operator reads the branches at once and reconciles the Project (and through it its
environments), with no rebuild; status.lastHandledReconcileAt tells the command it is done.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from kapsa.api.project import ANNOTATION_RECONCILE
from kapsa.cli import app
from kapsa.cli.cluster import KUBECONFIG_HELP, fail, kube
from kapsa.cli.durations import DEFAULT_TIMEOUT, Timeout, written
from kapsa.cli.output import Column, Output, resolve, show
from kapsa.errors import KapsaError
from kapsa.k8s.client import Kube
from kapsa.k8s.resources import ENVIRONMENT, PROJECT

JSON = dict[str, Any]
#: `kapsa reconcile` and the operator's own commands write with a field manager of their own.
FIELD_MANAGER = "kapsa-cli"

ENVIRONMENT_COLUMNS = (
    Column(header="ENVIRONMENT"),
    Column(header="TYPE", drop=3),
    Column(header="BRANCH", drop=4),
    Column(header="PHASE"),
    Column(header="READY"),
    Column(header="COMMIT", drop=5),
    Column(header="URL", fold=True, drop=6),
    Column(header="EXPIRES", drop=2),
    Column(header="CHANGED", drop=1),
    Column(header="MESSAGE", fold=True),
)
PREVIEW_COLUMNS = (
    Column(header="BRANCH"),
    Column(header="ENVIRONMENT", drop=2),
    Column(header="BUILD"),
    Column(header="HEAD", drop=3),
    Column(header="BUILT", drop=1),
    Column(header="NOTE", fold=True),
)
CONDITION_COLUMNS = (
    Column(header="CONDITION"),
    Column(header="STATUS"),
    Column(header="REASON"),
    Column(header="SINCE", drop=1),
    Column(header="MESSAGE", fold=True),
)


@dataclass(frozen=True, kw_only=True)
class Section:
    title: str
    columns: Sequence[Column]
    rows: list[list[str]]


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: str | None, *, now: datetime) -> str:
    """How long ago, as kubectl prints ages: 45s, 12m, 5h, 3d; `-` when unknown."""
    when = _parse(value)
    return "-" if when is None else _span(now - when)


def _span(value: timedelta) -> str:
    seconds = max(int(value.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _until(value: str | None, *, now: datetime) -> str:
    """When a preview goes: `in 3h (2026-12-04 10:00Z)`, or `-` for none."""
    when = _parse(value)
    if when is None:
        return "-"
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    left = when - now
    if left <= timedelta(0):
        return f"due ({stamp})"
    return f"in {_span(left)} ({stamp})"


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "-"


def _condition(obj: JSON, type_: str) -> JSON:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def header_lines(project: JSON, *, now: datetime) -> list[str]:
    """What the Project is, where it stands and why, in a few `key  value` lines."""
    status = project.get("status") or {}
    ready = _condition(project, "Ready")
    git = project["spec"]["source"]["git"]
    lines = [
        f"Project    {project['metadata']['name']}",
        f"Phase      {status.get('phase', 'Pending')}",
        f"Ready      {ready.get('status', 'Unknown')} ({ready.get('reason') or '-'}): "
        f"{ready.get('message') or status.get('message') or '-'}",
        f"Source     {git['url']}, branches read {age(status.get('lastPollTime'), now=now)} ago",
        f"Built      {_short(status.get('latestCommit'))}  {status.get('latestImage') or '-'}",
        f"Namespace  {status.get('namespace') or '-'}",
    ]
    last = status.get("lastTransition")
    if last:
        lines.append(
            f"Changed    {age(last.get('at'), now=now)} ago: {last.get('from')} -> "
            f"{last.get('to')} ({last.get('reason')}) {last.get('message', '')}".rstrip()
        )
    return lines


def sections(project: JSON, environments: list[JSON], *, now: datetime) -> list[Section]:
    """The environments, the previews and the Project's conditions, as tables."""
    envs = sorted(
        environments,
        key=lambda e: (e["spec"].get("type", "standard") != "standard", e["metadata"]["name"]),
    )
    env_rows = []
    for env in envs:
        status = env.get("status") or {}
        ready = _condition(env, "Ready")
        env_rows.append(
            [
                env["metadata"]["name"],
                env["spec"].get("type", "standard"),
                env["spec"].get("branch", "-"),
                status.get("phase", "Pending"),
                ready.get("status", "Unknown"),
                _short(status.get("commit")),
                status.get("url") or "-",
                _until(status.get("expiresAt"), now=now),
                age((status.get("lastTransition") or {}).get("at"), now=now),
                ready.get("message") or status.get("message") or "",
            ]
        )
    by_branch = {e["spec"].get("branch"): e for e in envs if e["spec"].get("type") == "preview"}
    preview_rows = []
    for preview in (project.get("status") or {}).get("previews") or []:
        preview_env = by_branch.get(preview.get("branch"))
        preview_rows.append(
            [
                preview.get("branch", "-"),
                preview_env["metadata"]["name"] if preview_env else "-",
                preview.get("buildState", "None"),
                _short(preview.get("commit")),
                _short(preview.get("builtCommit")),
                _preview_note(preview),
            ]
        )
    condition_rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            age(c.get("lastTransitionTime"), now=now),
            c.get("message", ""),
        ]
        for c in (project.get("status") or {}).get("conditions") or []
    ]
    found = [
        Section(title="Environments", columns=ENVIRONMENT_COLUMNS, rows=env_rows),
        Section(title="Previews", columns=PREVIEW_COLUMNS, rows=preview_rows),
        Section(title="Conditions", columns=CONDITION_COLUMNS, rows=condition_rows),
    ]
    return [s for s in found if s.rows]


def _preview_note(preview: JSON) -> str:
    notes = []
    if preview.get("waiting"):
        notes.append("waits for a free slot (previewEnvironments.maxCount)")
    if preview.get("expiredCommit"):
        notes.append(f"expired at {_short(preview['expiredCommit'])}; a new commit brings it back")
    if preview.get("gone"):
        notes.append("branch gone")
    if preview.get("message"):
        notes.append(str(preview["message"]))
    return "; ".join(notes)


def _read(client: Kube, name: str) -> tuple[JSON, list[JSON]]:
    project = client.get(PROJECT, name)
    if project is None:
        raise KapsaError(f"there is no Project {name}")
    namespace = (project.get("status") or {}).get("namespace") or name
    listed = client.list(ENVIRONMENT, namespace=namespace).get("items") or []
    return project, [e for e in listed if (e.get("spec") or {}).get("project") == name]


def print_status(project: JSON, environments: list[JSON], *, output: Output | None) -> None:
    """The screen of `kapsa status`; in a pipe every column is kept (wide), never cut."""
    chosen = resolve(output)
    if chosen in (Output.JSON, Output.YAML):
        data = {"project": project, "environments": environments}
        show(data, columns=(), rows=(), output=chosen, command="kapsa status")
        return
    if chosen is Output.TSV:
        chosen = Output.WIDE  # several tables with titles: aligned text, every column whole
    now = datetime.now(UTC)
    for line in header_lines(project, now=now):
        typer.echo(line)
    for section in sections(project, environments, now=now):
        typer.echo(f"\n{section.title}")
        rows = section.rows
        show(None, columns=section.columns, rows=rows, output=chosen, command="kapsa status")


OUTPUT_HELP = "table (the default on a terminal), wide (the default in a pipe), json or yaml."


@app.command()
def status(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
    output: Annotated[Output | None, typer.Option("-o", "--output", help=OUTPUT_HELP)] = None,
) -> None:
    """Show a Project: its environments, what each runs and where, previews, conditions."""
    client = kube(kubeconfig, command="kapsa status")
    try:
        obj, environments = _read(client, project)
    except KapsaError as exc:
        fail("kapsa status", str(exc))
    print_status(obj, environments, output=output)


@app.command()
def reconcile(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    wait: Annotated[
        bool, typer.Option(help="Wait for the operator to act, then show the Project.")
    ] = True,
    timeout: Timeout = DEFAULT_TIMEOUT,
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
) -> None:
    """Read PROJECT's branches and reconcile it now, without a rebuild (see kapsa.io/rebuild)."""
    client = kube(kubeconfig, command="kapsa reconcile")
    asked = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    try:
        if client.get(PROJECT, project) is None:
            raise KapsaError(f"there is no Project {project}")
        client.request(
            "PATCH",
            PROJECT.path(name=project),
            body={"metadata": {"annotations": {ANNOTATION_RECONCILE: asked}}},
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )
        if not wait:
            typer.echo(f"asked for a reconcile of {project} ({ANNOTATION_RECONCILE}={asked})")
            return
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            obj, environments = _read(client, project)
            if (obj.get("status") or {}).get("lastHandledReconcileAt") == asked:
                break
            if time.monotonic() >= deadline:
                raise KapsaError(
                    f"the operator did not act within {written(timeout)}; the request stays "
                    f"in the annotation {ANNOTATION_RECONCILE} and is acted on once it gets "
                    "to it (is the operator running? `kubectl -n kapsa-system get pods`)"
                )
            time.sleep(0.5)
    except KapsaError as exc:
        fail("kapsa reconcile", str(exc))
    typer.echo(f"reconciled {project}\n")
    print_status(obj, environments, output=None)
