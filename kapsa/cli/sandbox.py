"""`kapsa sandbox`: Kapsa on one machine without a cluster, and the commands that drive it.

`kapsa sandbox` runs a supervisor in the foreground (or, with `--detach`, in the background)
that owns every process of the sandbox; the other commands find it through the state file in
the sandbox folder, so `down` works from any terminal and nothing is left running after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kapsa.cli import app
from kapsa.errors import KapsaError
from kapsa.k8s.client import ApiError, Kube
from kapsa.sandbox.stack import (
    ProcessRecord,
    SandboxError,
    SandboxState,
    Stack,
    app_answer,
    changes,
    children_of,
    command_line,
    default_dir,
    end_processes,
    observe,
)
from kapsa.sandbox.tour import Tour

sandbox_app = typer.Typer(
    help="Try Kapsa without a cluster: a local control plane with the operator running in it.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(sandbox_app, name="sandbox")

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="KAPSA_SANDBOX_DIR",
        help="The sandbox folder (state file, logs, ledger). Default ~/.kapsa/sandbox.",
        show_default=False,
    ),
]
#: How long the foreground waits for the sample Project to run, once everything has started.
PROJECT_TIMEOUT = 180.0
#: How long `--detach` waits for the sandbox, including a first build of the control plane.
DETACH_TIMEOUT = 1200.0
STOP_TIMEOUT = 60.0


def _console() -> Console:
    """Wide when not a terminal: logs and captured output keep whole table rows."""
    return Console() if sys.stdout.isatty() else Console(width=120, soft_wrap=True)


def _folder(directory: Path | None) -> Path:

    return (directory or default_dir()).expanduser().resolve()


def _dir_flag(folder: Path) -> str:

    return "" if folder == default_dir().expanduser().resolve() else f" --dir {folder}"


class _Stop(Exception):  # noqa: N818  (a signal, not an error)
    """SIGTERM or SIGINT arrived: stop everything, in order."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stop


@sandbox_app.callback()
def sandbox(
    ctx: typer.Context,
    directory: DirOption = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Start in the background; return once the sample Project runs."
        ),
    ] = False,
    supervise: Annotated[bool, typer.Option("--supervise", hidden=True)] = False,
) -> None:
    """Start the sandbox: control plane, git server, registry, SIMULATORS, operator, a Project.

    It runs until Ctrl-C or `kapsa sandbox down`.
    """
    if ctx.invoked_subcommand is not None:
        return

    folder = _folder(directory)
    console = _console()
    previous = SandboxState.load(folder)
    if previous is not None and previous.running() and not supervise:
        pid = previous.supervisor.pid if previous.supervisor else "?"
        console.print(
            f"A sandbox already runs in {folder} (pid {pid})."
            f" See `kapsa sandbox status{_dir_flag(folder)}`, or stop it with "
            f"`kapsa sandbox down{_dir_flag(folder)}`."
        )
        raise typer.Exit(code=1)
    if previous is not None:
        left = end_processes(previous.processes)
        if left:
            console.print(f"Stopped {len(left)} processes a previous sandbox left running.")
    folder.mkdir(parents=True, exist_ok=True)
    if detach:
        raise typer.Exit(code=_detach(folder, console))
    raise typer.Exit(code=_serve(folder, console))


def _serve(folder: Path, console: Console) -> int:
    """The supervisor: start everything, wait for the sample Project, then hold until stopped."""
    pid = os.getpid()
    state = SandboxState(
        directory=str(folder),
        supervisor=ProcessRecord(name="kapsa sandbox", pid=pid, cmdline=command_line(pid) or []),
        log=str(folder / "sandbox.log"),
    )
    state.save()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    stack = Stack(folder)
    code = 0
    console.print(f"[bold]Kapsa sandbox[/] in {folder}")
    try:
        stack.start(progress=lambda line: console.print(f"  [green]*[/] {line}"))
        _record(stack, state)
        _wait_for_project(stack, state, console)
        state.processes = children_of(pid)
        state.status = "running"
        state.save()
        _print_try(state, console)
        while True:
            time.sleep(1.0)
    except _Stop:
        console.print("Stopping the sandbox.")
    except (KapsaError, OSError, subprocess.SubprocessError) as exc:
        state.status, state.message = "failed", str(exc)
        state.save()
        console.print(f"[red]The sandbox did not start:[/] {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if state.status != "failed":
            state.status = "stopping"
            state.save()
        stack.stop()
        if state.status != "failed":
            state.status = "stopped"
        state.save()
        console.print("Sandbox stopped.")
    return code


def _record(stack: Stack, state: SandboxState) -> None:
    """Write down what the other commands need to find: processes, ports, files, names."""
    plane, git, registry = stack.control_plane, stack.git_server, stack.registry_server
    if plane is None or git is None or registry is None or stack.project is None:
        raise SandboxError("the sandbox stopped while starting")
    state.processes = children_of(os.getpid())
    state.ports = {
        "kube-apiserver": int(plane.server.rsplit(":", 1)[1]),
        "git": git.port or 0,
        "registry": registry.port,
    }
    state.kubeconfig = str(plane.kubeconfig)
    state.kubectl = str(plane.assets.kubectl or "kubectl")
    state.ledger_url = stack.ledger_url
    state.project = stack.project["metadata"]["name"]
    state.namespace = state.project
    state.base_domain = stack.platform_names.base_domain
    state.git_dir = str(git.base_dir)
    state.repository = stack.project_name
    state.registry = registry.server
    state.node_netns = plane.node.netns.name if plane.node is not None else ""
    state.save()


def _wait_for_project(stack: Stack, state: SandboxState, console: Console) -> None:
    if stack.kube is None:
        raise SandboxError("the control plane is not running")
    deadline = time.monotonic() + PROJECT_TIMEOUT
    seen = None
    with console.status(f"Kapsa builds and deploys Project {state.project}"):
        while True:
            view = observe(stack.kube, state.project)
            for line in changes(seen, view):
                console.print(f"  [cyan]>[/] {line}")
            seen = view
            standard = [
                e for e in (view.environments.values() if view else []) if e.type == "standard"
            ]
            if (
                view
                and view.phase == "Running"
                and standard
                and all(e.phase == "Running" for e in standard)
            ):
                return
            if time.monotonic() > deadline:
                tail = stack.operator.tail() if stack.operator else ""
                raise SandboxError(
                    f"Project {state.project} was not Running within {PROJECT_TIMEOUT:.0f}s "
                    f"(phase {view.phase if view else 'unknown'}); operator log:\n{tail}"
                )
            time.sleep(0.5)


def _print_try(state: SandboxState, console: Console) -> None:
    folder = Path(state.directory)
    flag = _dir_flag(folder)
    console.print()
    console.print(f"[bold green]Kapsa runs.[/] Project [bold]{state.project}[/] is Running.")
    if state.node_netns:
        kube = Kube.from_kubeconfig(state.kubeconfig)
        for environment in ("dev", "prod"):
            try:
                said = app_answer(
                    kube, netns=state.node_netns, namespace=state.namespace, environment=environment
                )
            except KapsaError as error:
                said = f"(no answer: {error})"
            console.print(f"{environment} answers: {' | '.join(said.splitlines())}")
    console.print(f"kubeconfig: {state.kubeconfig}")
    console.print("Try:")
    for command in (
        f"{state.kubectl} --kubeconfig {state.kubeconfig} get projects,environments -A",
        f"kapsa history {state.project} --ledger {state.ledger_url}",
        f"kapsa sandbox tour{flag}",
        f"kapsa sandbox status{flag}",
        f"kapsa sandbox down{flag}",
    ):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
    if state.node_netns:
        console.print(
            "[dim]The apps run as real pods on a real node; kpack and cert-manager are "
            "SIMULATORS here.[/]"
        )
    else:
        console.print(
            "[dim]kpack, build Jobs, the kubelet and cert-manager are SIMULATORS here: "
            "no container runs.[/]"
        )


def _detach(folder: Path, console: Console) -> int:
    """Start the supervisor in a session of its own and relay its log until the Project runs."""

    log = folder / "sandbox.log"
    argv = [
        sys.executable,
        "-c",
        "from kapsa.cli import main; main()",
        "sandbox",
        "--dir",
        str(folder),
        "--supervise",
    ]
    with log.open("wb") as out:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DETACH_TIMEOUT
    shown = 0
    while True:
        text = log.read_text(errors="replace")
        lines = text.splitlines(keepends=True)
        complete = len(lines) if text.endswith("\n") else len(lines) - 1
        for line in lines[shown:complete]:
            console.out(line.rstrip("\n"), highlight=False)
        shown = max(shown, complete)
        state = SandboxState.load(folder)
        ours = (
            state is not None and state.supervisor is not None and state.supervisor.pid == child.pid
        )
        if ours and state is not None and state.status == "running":
            return 0
        if child.poll() is not None or (ours and state is not None and state.status == "failed"):
            console.print(f"[red]The sandbox did not start;[/] its log is {log}")
            return 1
        if time.monotonic() > deadline:
            console.print(
                f"[red]The sandbox did not start within {DETACH_TIMEOUT:.0f}s;[/] its log is {log}"
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            return 1
        time.sleep(0.2)


@sandbox_app.command()
def status(directory: DirOption = None) -> None:
    """Show what the sandbox runs: processes, ports, the sample Project and its environments."""

    folder = _folder(directory)
    console = _console()
    state = SandboxState.load(folder)
    if state is None or not state.running():
        last = (
            f" (last state: {state.status}{': ' + state.message if state.message else ''})"
            if state
            else ""
        )
        console.print(f"No sandbox runs in {folder}{last}.")
        raise typer.Exit(code=1)
    console.print(f"Sandbox {state.status} in {folder}")
    table = Table(box=None, header_style="bold")
    for column in ("PROCESS", "PID", "STATE"):
        table.add_column(column)
    for record in [state.supervisor, *state.processes]:
        if record is not None:
            table.add_row(record.name, str(record.pid), "running" if record.alive() else "gone")
    console.print(table)
    for name, port in state.ports.items():
        console.print(f"{name} port: {port}", highlight=False)
    console.print(f"kubeconfig: {state.kubeconfig}", highlight=False)
    console.print(f"ledger: {state.ledger_url}", highlight=False)
    if not state.kubeconfig:
        return
    try:
        view = observe(Kube.from_kubeconfig(state.kubeconfig), state.project)
    except ApiError as exc:
        console.print(f"The API server did not answer: {exc}")
        return
    if view is None:
        console.print(f"Project {state.project}: not found")
        return
    console.print(f"Project {view.name}: {view.phase}", highlight=False)
    envs = Table(box=None, header_style="bold")
    for column in ("ENVIRONMENT", "TYPE", "BRANCH", "PHASE", "COMMIT", "URL"):
        envs.add_column(column, no_wrap=True)
    for env in sorted(view.environments.values(), key=lambda e: (e.type != "standard", e.name)):
        envs.add_row(
            env.name, env.type, env.branch, env.phase, (env.commit or "-")[:7], env.url or "-"
        )
    console.print(envs)


@sandbox_app.command()
def down(directory: DirOption = None) -> None:
    """Stop the sandbox and every process it started, from any terminal."""

    folder = _folder(directory)
    console = _console()
    state = SandboxState.load(folder)
    if state is None:
        console.print(f"No sandbox in {folder}; nothing to stop.")
        return
    supervisor = state.supervisor
    if supervisor is not None and supervisor.alive():
        console.print(f"Stopping the sandbox in {folder} (pid {supervisor.pid}) ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while supervisor.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        end_processes([supervisor], grace=5.0)
    left = end_processes(state.processes)
    for record in left:
        console.print(f"stopped {record.name} (pid {record.pid}), which outlived the supervisor")
    after = SandboxState.load(folder) or state
    after.status = "stopped"
    after.save()
    console.print(
        f"Sandbox stopped. Its ledger stays readable: kapsa history {state.project} "
        f"--ledger {state.ledger_url}",
        highlight=False,
    )


@sandbox_app.command()
def tour(directory: DirOption = None) -> None:
    """Walk through a developer's day against the running sandbox, showing what Kapsa does."""

    folder = _folder(directory)
    console = _console()
    state = SandboxState.load(folder)
    if state is None or not state.running() or state.status != "running":
        console.print(
            f"No running sandbox in {folder}: start one with "
            f"`kapsa sandbox --detach{_dir_flag(folder)}`."
        )
        raise typer.Exit(code=1)
    if not Tour(state=state, console=console).run():
        raise typer.Exit(code=1)
