"""`kapsa status` and `kapsa reconcile` against a real API server and operator."""

from __future__ import annotations

import json
import subprocess

from kapsa.api.project import ANNOTATION_RECONCILE
from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.stack import KAPSA
from tests.e2e.harness import SAMPLE_APP, OperatorProcess, get, phase_of, project_yaml
from tests.waiting import wait_until

APP = SAMPLE_APP


def _kapsa(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPSA, *args, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_status_shows_the_project_and_reconcile_reads_the_branches_now(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
) -> None:
    name = "glance"
    first = git_server.create_repo(name, files=APP)
    # An hour between polls: only `kapsa reconcile` can make the operator see a new commit soon.
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[{"name": "dev", "branch": "main", "autoSync": True}],
            poll="1h",
        ),
    )
    wait_until(
        lambda: phase_of(control_plane, "project", name) == "Running",
        timeout=60,
        message=lambda: f"Project {name} Running\n{operator.tail()}",
    )

    shown = _kapsa(control_plane, "status", name)
    assert shown.returncode == 0, shown.stderr
    assert "Phase      Running" in shown.stdout
    assert "Ready      True (Running)" in shown.stdout
    dev = next(line for line in shown.stdout.splitlines() if line.startswith("dev "))
    assert dev.split()[:6] == ["dev", "standard", "main", "Running", "True", first[:12]]
    assert f"https://dev.{name}.apps.corp.com" in dev
    assert "SourceReachable" in shown.stdout

    as_json = json.loads(_kapsa(control_plane, "status", name, "-o", "json").stdout)
    assert as_json["project"]["metadata"]["name"] == name
    assert [e["metadata"]["name"] for e in as_json["environments"]] == ["dev"]

    second = git_server.commit(name, branch="main", files={"app.py": "print('v2')\n"})
    reconciled = _kapsa(control_plane, "reconcile", name, "--timeout", "60s")
    assert reconciled.returncode == 0, reconciled.stderr + operator.tail()
    assert f"reconciled {name}" in reconciled.stdout
    project = get(control_plane, "project", name)
    asked = project["metadata"]["annotations"][ANNOTATION_RECONCILE]
    assert project["status"]["lastHandledReconcileAt"] == asked
    # The reconcile listed the branches anew: the new head is known long before the next poll.
    assert project["status"]["branches"][0]["commit"] == second
    wait_until(
        lambda: (
            (get(control_plane, "-n", name, "environment", "dev") or {})
            .get("status", {})
            .get("commit")
            == second
        ),
        timeout=60,
        message=lambda: f"dev on {second[:7]}\n{operator.tail()}",
    )
    control_plane.kubectl("delete", "project", name, "--wait=false")


def test_status_and_reconcile_of_a_missing_project_say_so(control_plane: ControlPlane) -> None:
    for command in ("status", "reconcile"):
        result = _kapsa(control_plane, command, "nosuch")

        assert result.returncode == 1
        assert result.stderr.strip() == f"kapsa {command}: there is no Project nosuch"
