"""Kapsa as users meet it: a real operator process, driven through kubectl.

The operator runs as `kapsa operator` in its own process (so tests can kill -9 it); the kpack,
kubelet and cert-manager SIMULATORS run in the test process against the same API server.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from kapsa.controlplane import ControlPlane
from kapsa.errors import ControlPlaneError
from kapsa.ledger import Entry, Ledger
from kapsa.sandbox import stack
from tests.waiting import wait_until

#: The admin's objects as deploy/examples names them (the `platform` fixture applies them).
REGISTRY = "harbor"
DOMAIN_POOL = "apps"
CLUSTER_ISSUER = "letsencrypt-prod"
BASE_DOMAIN = "apps.corp.com"
#: The sandbox's sample app: a repository the simulated buildpacks build into an image that runs.
SAMPLE_APP = stack.sample_files()


class OperatorProcess(stack.OperatorProcess):
    """The sandbox's operator process, on a free loopback port so replicas can run side by side."""

    def __init__(
        self,
        *,
        control_plane: ControlPlane,
        ledger_url: str,
        workdir: Path,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            kubeconfig=control_plane.kubeconfig,
            ledger_url=ledger_url,
            workdir=workdir,
            extra=["--http-host", "127.0.0.1", "--http-port", "0", *(extra or [])],
            env=env,
        )

    def url(self) -> str:
        """Where this process serves its probes and webhooks."""
        return self._listening(r"; http on 127\.0\.0\.1:(\d+)")

    def internal_url(self) -> str:
        """Where this process serves metrics and the ledger API (loopback only)."""
        return self._listening(r"internal http on 127\.0\.0\.1:(\d+)")

    def _listening(self, pattern: str) -> str:
        match = wait_until(
            lambda: re.search(pattern, self.log.read_text()),
            timeout=30,
            message=f"the operator's HTTP port in its log ({pattern})",
        )
        assert match is not None
        return f"http://127.0.0.1:{match.group(1)}"


def project_yaml(
    *,
    name: str,
    url: str,
    environments: list[dict[str, Any]],
    poll: str = "1s",
    extra_spec: dict[str, Any] | None = None,
) -> str:
    doc = {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Project",
        "metadata": {"name": name},
        "spec": {
            "source": {"git": {"url": url}, "pollInterval": poll},
            "build": {"registryRef": {"name": REGISTRY}, "repository": f"apps/{name}"},
            "domainPoolRef": {"name": DOMAIN_POOL},
            "app": {"port": 8080, "rolloutDeadline": "20s"},
            "environments": environments,
            **(extra_spec or {}),
        },
    }
    return yaml.safe_dump(doc)


def get(control_plane: ControlPlane, *args: str) -> Any:
    out = control_plane.kubectl("get", *args, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def status_of(control_plane: ControlPlane, *args: str) -> dict[str, Any]:
    return dict((get(control_plane, *args) or {}).get("status") or {})


def phase_of(control_plane: ControlPlane, *args: str) -> str | None:
    return status_of(control_plane, *args).get("phase")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for entry in ((obj or {}).get("status") or {}).get("conditions", []):
        if entry["type"] == type_:
            return dict(entry)
    return {}


def answer(
    control_plane: ControlPlane,
    namespace: str,
    service: str,
    path: str = "/",
    *,
    timeout: float = 5.0,
) -> str:
    """What an environment's app answers through its Service, from the node's own network."""
    assert control_plane.node is not None, "the suite runs a real node"
    cluster_ip = get(control_plane, "-n", namespace, "service", service)["spec"]["clusterIP"]
    return control_plane.node.netns.fetch(f"http://{cluster_ip}{path}", timeout=timeout)


def serves(
    control_plane: ControlPlane, namespace: str, service: str, expected: str, path: str = "/"
) -> None:
    """The app answers `expected`: within the few seconds kube-proxy takes to follow the
    Endpoints Kapsa waited for, never more."""

    def said() -> str:
        try:
            return answer(control_plane, namespace, service, path)
        except ControlPlaneError as error:
            return str(error)

    wait_until(
        lambda: said() == expected,
        timeout=10,
        message=lambda: f"{namespace}/{service} answering {expected!r}, not {said()!r}",
    )


def history(ledger_url: str, project: str) -> list[Entry]:
    ledger = Ledger.open(ledger_url)
    try:
        return ledger.history(project=project)
    finally:
        ledger.close()


def moves(entries: list[Entry], *, kind: str, name: str) -> list[tuple[str, str, str]]:
    return [
        (e.from_state, e.to_state, e.trigger) for e in entries if e.kind == kind and e.name == name
    ]


def wait_for_project_phase(
    control_plane: ControlPlane,
    name: str,
    phase: str,
    operator: OperatorProcess,
    *,
    timeout: float = 60,
) -> None:
    wait_until(
        lambda: phase_of(control_plane, "project", name) == phase,
        timeout=timeout,
        message=lambda: f"Project {name} {phase}\n{operator.tail()}",
    )


def wait_for_commit(
    control_plane: ControlPlane,
    name: str,
    environment: str,
    commit: str,
    operator: OperatorProcess,
    *,
    timeout: float = 60,
) -> None:
    """Until the environment runs `commit` and is Running again."""
    wait_until(
        lambda: (
            status_of(control_plane, "-n", name, "environment", environment).get("commit") == commit
            and phase_of(control_plane, "-n", name, "environment", environment) == "Running"
        ),
        timeout=timeout,
        message=lambda: f"{environment} of {name} on {commit[:7]}\n{operator.tail()}",
    )


def assert_ledger_clean(ledger_url: str, project: str) -> None:
    """No duplicate and no missing row: every object's sequence numbers run 1..n."""
    by_uid: dict[str, list[int]] = {}
    for row in history(ledger_url, project):
        by_uid.setdefault(row.uid, []).append(row.seq)
    for uid, seqs in by_uid.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), (uid, seqs)


def remove_all_projects(control_plane: ControlPlane, operator: OperatorProcess) -> None:
    """Delete every Project and wait, with an operator still running, until all is gone.

    The operator finalizes what it owns (the ledger's last rows), so leaving this to a later
    test's operator would mix one test's history into another's.
    """
    control_plane.kubectl("delete", "projects", "--all", "--wait=false")
    wait_until(
        lambda: (
            not get(control_plane, "projects")["items"]
            and not get(control_plane, "environments", "--all-namespaces")["items"]
        ),
        timeout=90,
        message=lambda: "every Project and Environment gone\n" + operator.tail(),
    )


def assert_chain(steps: list[tuple[str, str, str]], *, ends: str) -> None:
    """The moves of one object form an unbroken path from Pending to `ends`: none lost."""
    assert steps, "no transitions recorded"
    assert steps[0][0] == "Pending", steps
    for before, after in itertools.pairwise(steps):
        assert before[1] == after[0] or after[2] == "drift_repaired", (before, after)
    assert steps[-1][1] == ends, steps


def share_git_secret(
    control_plane: ControlPlane,
    *,
    secret: str,
    project: str,
    username: str,
    password: str,
    more: dict[str, str] | None = None,
) -> None:
    """A basic-auth Secret in kapsa-system, shared with `project` for the test git host, as
    docs/platform-admin.md tells an owner to share one."""
    literals = {"username": username, "password": password, **(more or {})}
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "create",
        "secret",
        "generic",
        secret,
        "--type=kubernetes.io/basic-auth",
        *(f"--from-literal={key}={value}" for key, value in literals.items()),
    )
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "annotate",
        "secret",
        secret,
        f"kapsa.io/shared-with-projects={project}",
        "kapsa.io/git-host=127.0.0.1",
    )
