"""`kapsa sandbox` as a user runs it: start in the background, look, take the tour, stop.

One sandbox for the module (it is a second control plane beside the session's); the tests run
in file order because each step stands on the previous one, as a user's session does.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from kapsa.k8s.client import Kube
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.stack import SandboxState, app_answer, command_line
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

KAPSA = str(Path(sys.executable).with_name("kapsa"))
#: A first start may build the control plane's binaries (minutes); later ones take seconds.
START_TIMEOUT = 1500


def kapsa_sandbox(
    folder: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAPSA_SANDBOX_DIR": str(folder), "COLUMNS": "120"}
    return subprocess.run(
        [KAPSA, "sandbox", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


class Sandbox:
    def __init__(self, folder: Path, started: subprocess.CompletedProcess[str]) -> None:
        self.folder = folder
        self.started = started

    @property
    def state(self) -> SandboxState:
        state = SandboxState.load(self.folder)
        assert state is not None, f"no state file in {self.folder}"
        return state

    def git(self) -> tuple[GitServer, str]:
        return GitServer(Path(self.state.git_dir)), self.state.repository

    def kubectl(self, *args: str) -> str:
        state = self.state
        return subprocess.run(
            [state.kubectl, "--kubeconfig", state.kubeconfig, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder = tmp_path_factory.mktemp("sandbox")
    started = kapsa_sandbox(folder, "--detach", timeout=START_TIMEOUT)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield Sandbox(folder, started)
    finally:
        kapsa_sandbox(folder, "down")


def test_detach_returns_once_the_sample_project_runs(sandbox: Sandbox) -> None:
    state = sandbox.state
    out = sandbox.started.stdout
    assert state.status == "running"
    assert f"Kapsa runs. Project {state.project} is Running." in out
    for simulator in ("SIMULATOR kpack", "SIMULATOR cert-manager"):
        assert simulator in out
    # The node is real: the kubelet is not simulated, and the apps answer.
    assert "SIMULATOR kubelet" not in out
    assert state.node_netns
    commit = sandbox.kubectl(
        "-n", state.namespace, "get", "environment", "dev", "-o", "jsonpath={.status.commit}"
    )
    assert f"dev answers: Hello from Kapsa | commit: {commit}" in out
    assert f"prod answers: Hello from Kapsa | commit: {commit}" in out
    assert f"--kubeconfig {state.kubeconfig} get projects,environments -A" in out
    assert f"kapsa history {state.project} --ledger {state.ledger_url}" in out
    assert (
        sandbox.kubectl("get", "project", state.project, "-o", "jsonpath={.status.phase}")
        == "Running"
    )
    phases = sandbox.kubectl(
        "-n",
        state.namespace,
        "get",
        "environments",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
    )
    assert phases.split() == ["dev=Running", "prod=Running"]


def test_status_shows_the_processes_ports_and_environments(sandbox: Sandbox) -> None:
    state = sandbox.state
    shown = kapsa_sandbox(sandbox.folder, "status")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    out = shown.stdout
    assert f"Sandbox running in {sandbox.folder}" in out
    names = {record.name for record in state.processes}
    assert {"etcd", "kube-apiserver", "git daemon", "docker-registry", "kapsa operator"} <= names
    for record in [state.supervisor, *state.processes]:
        assert record is not None
        assert re.search(rf"{re.escape(record.name)}\s+{record.pid}\s+running", out), out
    for name, port in state.ports.items():
        assert f"{name} port: {port}" in out
    assert f"Project {state.project}: Running" in out
    for env in ("dev", "prod"):
        url = f"https://{env}.{state.project}.{state.base_domain}"
        assert re.search(rf"{env}\s+standard\s+main\s+Running\s+\w{{7}}\s+{re.escape(url)}", out)


def test_a_second_start_is_refused_while_one_runs(sandbox: Sandbox) -> None:
    again = kapsa_sandbox(sandbox.folder, "--detach")
    assert again.returncode == 1
    assert f"A sandbox already runs in {sandbox.folder}" in again.stdout
    assert sandbox.state.running()


def test_tour_shows_what_kapsa_does_at_each_step(sandbox: Sandbox) -> None:
    state = sandbox.state
    git, repo = sandbox.git()
    first = git.head(repo, "main")[:7]
    toured = kapsa_sandbox(sandbox.folder, "tour", timeout=900)
    out = toured.stdout
    assert toured.returncode == 0, out + toured.stderr
    assert "Tour complete." in out

    french = re.search(r"pushed (\w{7}) to main: Greet in French", out)
    assert french, out
    second = french.group(1)
    assert f"dev runs {second}" in out
    assert f"prod still runs {first}: autoSync is off" in out
    assert re.search(rf"dev answers: Bonjour de Kapsa \| commit: {second}\w{{33}}", out), out
    assert re.search(rf"prod answers: Hello from Kapsa \| commit: {first}\w{{33}}", out), out

    preview = re.search(r"pushed (\w{7}) to a new branch feature/new-api", out)
    assert preview, out
    url = f"https://feature-new-api.{state.project}.{state.base_domain}"
    assert f"preview feature-new-api runs {preview.group(1)} at {url}" in out
    assert f"feature-new-api answers: Hello from the new API | commit: {preview.group(1)}" in out

    assert re.search(r"Build failed: .*No buildpack groups passed detection", out), out
    assert f"dev still runs {second} (its last good image)" in out
    assert f"prod still runs {first} (its last good image)" in out

    fixed = git.head(repo, "main")[:7]
    assert f"Project Running again; dev runs {fixed}" in out
    assert f"dev answers: Bonjour de Kapsa | commit: {fixed}" in out

    project = re.escape(f"Project/{state.project}")
    for row in (
        rf"{project}\s+Pending -> Building\s+build_started\s+BuildStarted",
        rf"{project}\s+Building -> Failed\s+build_failed\s+BuildFailed",
        rf"{project}\s+Failed -> Building\s+build_started\s+BuildStarted",
        rf"Environment/dev\s+Deploying -> Running\s+rollout_ready\s+Ready\s+{second}",
        rf"Environment/dev\s+Deploying -> Running\s+rollout_ready\s+Ready\s+{fixed}",
        r"Environment/feature-new-api\s+Deploying -> Running\s+rollout_ready",
    ):
        assert re.search(row, out), f"no history row like {row!r} in:\n{out}"

    full = git.head(repo, "main")
    assert (
        sandbox.kubectl(
            "-n", state.namespace, "get", "environment", "dev", "-o", "jsonpath={.status.commit}"
        )
        == full
    )
    assert (
        sandbox.kubectl(
            "-n", state.namespace, "get", "environment", "prod", "-o", "jsonpath={.status.commit}"
        )[:7]
        == first
    )


def test_the_sample_app_switched_to_its_dockerfile_is_built_by_buildah_and_answers_the_same(
    sandbox: Sandbox,
) -> None:
    """docs/quickstart.md's switch: one patch, the same commit built in a Job with buildah."""
    state = sandbox.state
    namespace = state.namespace
    image_of_dev = partial(
        sandbox.kubectl,
        "-n",
        namespace,
        "get",
        "environment",
        "dev",
        "-o",
        "jsonpath={.status.image}",
    )
    before = image_of_dev()
    sandbox.kubectl(
        "patch", "project", state.project, "--type=merge",
        "-p", '{"spec":{"build":{"strategy":"dockerfile"}}}',
    )  # fmt: skip
    wait_until(lambda: image_of_dev() != before, timeout=300, message="dev on the buildah image")
    jobs = sandbox.kubectl(
        "-n", namespace, "get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"
    )
    assert jobs.split(), "no build Job"
    logs = sandbox.kubectl("-n", namespace, "logs", f"job/{jobs.split()[-1]}")
    assert 'RUN echo "built by buildah" > built-by.txt' in logs
    commit = sandbox.kubectl(
        "-n", namespace, "get", "environment", "dev", "-o", "jsonpath={.status.commit}"
    )
    kube = Kube.from_kubeconfig(state.kubeconfig)
    assert state.node_netns, "the sandbox runs a real node here"
    wait_until(
        lambda: (
            f"commit: {commit}"
            in app_answer(kube, netns=state.node_netns, namespace=namespace, environment="dev")
        ),
        timeout=60,
        message="dev answering with its commit",
    )


def _port_free(port: int) -> bool:
    """Nothing listens: a connection is refused and a server could bind the port again.

    SO_REUSEADDR as every server sets it: closed connections may linger in TIME_WAIT.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_down_stops_every_process_it_started(sandbox: Sandbox) -> None:
    state = sandbox.state
    records = [state.supervisor, *state.processes]
    assert len(records) >= 7
    stopped = kapsa_sandbox(sandbox.folder, "down", timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Sandbox stopped." in stopped.stdout
    for record in records:
        assert record is not None
        assert command_line(record.pid) != record.cmdline, f"{record.name} still runs"
    for name, port in state.ports.items():
        wait_until(partial(_port_free, port), timeout=10, message=f"{name} port {port} free")
    # The node's network namespace and its pods went with it.
    assert not (Path("/run/netns") / state.node_netns).exists()
    shims = subprocess.run(["pgrep", "-f", state.node_netns], capture_output=True, check=False)
    assert shims.stdout == b""
    after = kapsa_sandbox(sandbox.folder, "status")
    assert after.returncode == 1
    assert f"No sandbox runs in {sandbox.folder}" in after.stdout
