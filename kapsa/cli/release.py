"""`kapsa rollback`, `kapsa promote` and `kapsa diff-releases`: release control from the shell.

Rollback and promotion write a request into the Environment's `spec.release` and wait for the
operator's answer in `status.release`: the operator does every check (the ledger's evidence,
the registry, the minimum ready time), so a request made with kubectl is held to the same
rules and the command line adds no rule of its own. It only turns `--steps N` into a commit,
which needs the ledger, and prints the answer; a refusal exits 1.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kapsa.cli import app
from kapsa.cli.cluster import KUBECONFIG_HELP, fail
from kapsa.cli.cluster import kube as kube_client
from kapsa.cli.durations import DEFAULT_TIMEOUT, Timeout, duration, written
from kapsa.cli.ledger_client import SERVER_HELP, LedgerQuery, read
from kapsa.errors import KapsaError
from kapsa.git.credentials import credentials_from_secret_data
from kapsa.git.log import Commit, commits_between
from kapsa.git.urls import validate_url
from kapsa.k8s.client import ApiError, Kube
from kapsa.k8s.resources import ENVIRONMENT, PROJECT, SECRET
from kapsa.ledger import DEFAULT_URL

#: The field manager of the requests; anything but "kapsa", whose applies own other fields.
FIELD_MANAGER = "kapsa-cli"
REQUEST_FIELDS = ("rollbackTo", "promoteFrom", "minReady", "requestedAt")
DEFAULT_GIT_CACHE = Path.home() / ".cache" / "kapsa" / "git"


class _RefusedError(KapsaError):
    """The operator refused the request, or no answer came; the message says why."""


@dataclass(frozen=True, kw_only=True)
class _Target:
    """One Environment, found through its Project."""

    project: str
    environment: str
    namespace: str


def _target(kube: Kube, *, project: str, environment: str) -> _Target:
    obj = kube.get(PROJECT, project)
    if obj is None:
        raise _RefusedError(f"there is no Project {project}")
    namespace = (obj.get("status") or {}).get("namespace") or project
    env = kube.get(ENVIRONMENT, environment, namespace=namespace)
    if env is None or env["spec"].get("project") != project:
        raise _RefusedError(f"Project {project} has no environment {environment}")
    return _Target(project=project, environment=environment, namespace=namespace)


def _request(kube: Kube, target: _Target, request: dict[str, str], *, timeout: timedelta) -> str:
    """Write spec.release and wait for the operator's answer; its message when accepted."""
    path = ENVIRONMENT.path(namespace=target.namespace, name=target.environment)
    # A merge patch merges objects: the other kind of request's fields are cleared explicitly.
    cleared: dict[str, str | None] = {key: None for key in REQUEST_FIELDS}
    kube.request(
        "PATCH",
        path,
        body={"spec": {"release": {**cleared, **request}}},
        query={"fieldManager": FIELD_MANAGER},
        content_type="application/merge-patch+json",
    )
    deadline = time.monotonic() + timeout.total_seconds()
    said = ""
    while True:
        env = kube.get(ENVIRONMENT, target.environment, namespace=target.namespace) or {}
        answer = (env.get("status") or {}).get("release") or {}
        if answer.get("request") == request:
            outcome, message = answer.get("outcome"), answer.get("message", "")
            if outcome == "Refused":
                raise _RefusedError(f"refused: {message}")
            if outcome == "Accepted":
                return str(message)
            if message != said:
                typer.echo(f"{target.environment} {message}", err=True)
                said = message
        if time.monotonic() >= deadline:
            raise _RefusedError(
                f"no answer from the operator within {written(timeout)}; the request stays in "
                f"spec.release of Environment {target.namespace}/{target.environment} and "
                "is answered in its status.release once the operator gets to it"
            )
        time.sleep(0.5)


def _wait_running(kube: Kube, target: _Target, *, image: str | None, timeout: timedelta) -> None:
    deadline = time.monotonic() + timeout.total_seconds()
    while time.monotonic() < deadline:
        env = kube.get(ENVIRONMENT, target.environment, namespace=target.namespace) or {}
        status = env.get("status") or {}
        if status.get("phase") == "Running" and status.get("image") == image:
            return
        if status.get("phase") == "Failed" and not status.get("targetImage"):
            raise _RefusedError(f"the rollout failed: {status.get('message', '')}")
        time.sleep(0.5)
    raise _RefusedError(
        f"{target.environment} did not become Running on {image} in {written(timeout)}"
    )


def _deployments(project: str, env: str, *, ledger_url: str, server: str | None) -> list[Any]:
    query = LedgerQuery(project=project, env=env)
    return list(read(query, deployments=True, ledger_url=ledger_url, server=server))


def release_commit(
    spans: list[dict[str, Any]], *, release: int | None, steps: int | None, env: str
) -> tuple[int, str]:
    """(number, commit) of the release asked for, in the ledger's one numbering.

    Releases are numbered 1, 2, 3... oldest first, as `kapsa history --deployments` shows them
    and `kapsa diff-releases` takes them; `--steps N` means the release N before the newest.
    """
    if not spans:
        raise _RefusedError(f"the ledger has no release of {env}")
    newest = len(spans)
    number = release if release is not None else newest - (steps or 1)
    if not 1 <= number <= newest:
        raise _RefusedError(
            f"{env} has releases 1 to {newest}, not {number}; "
            "see `kapsa history PROJECT --env ENV --deployments`"
        )
    if number == newest and spans[-1]["ended"] is None:
        raise _RefusedError(f"release {number} is the one {env} runs now")
    commit = spans[number - 1]["commit"]
    if not commit:
        raise _RefusedError(f"the ledger names no commit for release {number} of {env}")
    return number, str(commit)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@app.command()
def rollback(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    env: Annotated[str, typer.Argument(help="The environment to roll back.")],
    to: Annotated[
        str | None, typer.Option("--to", help="The commit to return to (7+ hex digits).")
    ] = None,
    release: Annotated[
        int | None,
        typer.Option(
            "--release", min=1, help="Return to release N, as `history --deployments` numbers it."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Return to the release N before the newest (1)."),
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
    ledger_url: Annotated[
        str,
        typer.Option(
            "--ledger", envvar="KAPSA_LEDGER_URL", help="The ledger, for --release and --steps."
        ),
    ] = DEFAULT_URL,
    server: Annotated[
        str | None, typer.Option("--server", envvar="KAPSA_SERVER", help=SERVER_HELP)
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the environment runs the image again.")
    ] = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Return ENV to a commit that ran ready there, and quarantine the commit it leaves."""
    if sum(choice is not None for choice in (to, release, steps)) > 1:
        raise typer.BadParameter("choose one of --to, --release and --steps", param_hint="--to")
    kube = kube_client(kubeconfig)
    try:
        target = _target(kube, project=project, environment=env)
        commit = to
        if commit is None:
            spans = _deployments(project, env, ledger_url=ledger_url, server=server)
            number, commit = release_commit(spans, release=release, steps=steps, env=env)
            typer.echo(f"rolling {env} back to release {number} ({commit[:12]})", err=True)
        message = _request(
            kube, target, {"rollbackTo": commit.lower(), "requestedAt": _now()}, timeout=timeout
        )
        typer.echo(message)
        if wait:
            _wait_running(kube, target, image=_answered_image(kube, target), timeout=timeout)
            typer.echo(f"{env} is Running again.")
    except (_RefusedError, KapsaError) as exc:
        fail("kapsa rollback", str(exc))


@app.command()
def promote(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    from_env: Annotated[str, typer.Argument(metavar="FROM", help="Where the image has run.")],
    to_env: Annotated[str, typer.Argument(metavar="TO", help="Where it should run now.")],
    min_ready: Annotated[
        timedelta,
        typer.Option(
            "--min-ready",
            parser=duration,
            metavar="DURATION",
            show_default="10m",
            help="How long FROM must have run it ready (e.g. 30m, 1h).",
        ),
    ] = timedelta(minutes=10),
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
    wait: Annotated[bool, typer.Option(help="Wait until TO runs the image.")] = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Run in TO the image FROM runs, without a rebuild, once the ledger proves it there."""
    kube = kube_client(kubeconfig)
    try:
        target = _target(kube, project=project, environment=to_env)
        request = {"promoteFrom": from_env, "minReady": written(min_ready), "requestedAt": _now()}
        typer.echo(_request(kube, target, request, timeout=timeout))
        if wait:
            _wait_running(kube, target, image=_answered_image(kube, target), timeout=timeout)
            typer.echo(f"{to_env} is Running the promoted image.")
    except (_RefusedError, KapsaError) as exc:
        fail("kapsa promote", str(exc))


def _answered_image(kube: Kube, target: _Target) -> str | None:
    env = kube.get(ENVIRONMENT, target.environment, namespace=target.namespace) or {}
    image = ((env.get("status") or {}).get("release") or {}).get("image")
    return str(image) if image else None


@app.command("diff-releases")
def diff_releases(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    env: Annotated[str, typer.Argument(help="The environment.")],
    from_release: Annotated[
        int | None,
        typer.Option("--from", help="Release number (1 = the first; default: the one before)."),
    ] = None,
    to_release: Annotated[
        int | None, typer.Option("--to", help="Release number (default: the current one).")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
    ledger_url: Annotated[
        str, typer.Option("--ledger", envvar="KAPSA_LEDGER_URL", help="The ledger's URL.")
    ] = DEFAULT_URL,
    server: Annotated[
        str | None, typer.Option("--server", envvar="KAPSA_SERVER", help=SERVER_HELP)
    ] = None,
    git_cache: Annotated[
        Path, typer.Option(help="Where to keep the repository's history between runs.")
    ] = DEFAULT_GIT_CACHE,
) -> None:
    """List the commits between two releases of ENV, as the ledger numbers them."""
    try:
        spans = _deployments(project, env, ledger_url=ledger_url, server=server)
        if not spans:
            raise _RefusedError(f"the ledger has no release of {env} in {project}")
        new = to_release or len(spans)
        old = from_release or max(new - 1, 1)
        for number in (old, new):
            if not 1 <= number <= len(spans):
                raise _RefusedError(f"{env} has releases 1 to {len(spans)}, not {number}")
        old_commit, new_commit = spans[old - 1]["commit"], spans[new - 1]["commit"]
        if not old_commit or not new_commit:
            raise _RefusedError("the ledger names no commit for one of these releases")
        added, removed = _commits(
            project, env, old_commit, new_commit, kubeconfig=kubeconfig, git_cache=git_cache
        )
    except (_RefusedError, KapsaError) as exc:
        fail("kapsa diff-releases", str(exc))
    typer.echo(f"release {old} ({old_commit[:12]}) -> release {new} ({new_commit[:12]})")
    console = Console(soft_wrap=False)
    for title, commits in (("added", added), ("removed (rolled back)", removed)):
        if not commits:
            continue
        table = Table(box=None, header_style="bold", title=title, title_justify="left")
        for column in ("COMMIT", "DATE", "AUTHOR", "SUBJECT"):
            table.add_column(column, no_wrap=column != "SUBJECT")
        for commit in commits:
            table.add_row(commit.sha[:12], commit.date, commit.author, commit.subject)
        console.print(table)
    if not added and not removed:
        typer.echo("no commits between them")


def _commits(
    project: str, env: str, old: str, new: str, *, kubeconfig: str | None, git_cache: Path
) -> tuple[list[Commit], list[Commit]]:
    """(added, removed): old..new and new..old, read from the Project's repository."""
    kube = kube_client(kubeconfig)
    obj = kube.get(PROJECT, project)
    if obj is None:
        raise _RefusedError(f"there is no Project {project}")
    git_source = obj["spec"]["source"]["git"]
    # This runs on the user's machine, with the user's network: any host they can reach.
    url = validate_url(git_source["url"], allow_insecure=True, allow_private_hosts=True)
    credentials = None
    ref = git_source.get("secretRef")
    if ref:
        try:
            secret = kube.get(SECRET, ref["name"], namespace=ref.get("namespace") or "kapsa-system")
        except ApiError:
            secret = None  # not allowed to read it: try without
        if secret is not None:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            credentials = credentials_from_secret_data(data)
    namespace = (obj.get("status") or {}).get("namespace") or project
    environment = kube.get(ENVIRONMENT, env, namespace=namespace) or {}
    branch = (environment.get("spec") or {}).get("branch")
    added = commits_between(
        url, old, new, cache_dir=git_cache, credentials=credentials, branch=branch
    )
    removed = commits_between(
        url, new, old, cache_dir=git_cache, credentials=credentials, branch=branch
    )
    return added, removed
