"""The real node: pods start, and nothing of it outlives the run, even a run that was killed.

The suite's own node (in the session's control plane) is checked in place; the crash test
starts a second control plane with its node in a child process and kills that process outright.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from kapsa.controlplane import ControlPlane
from kapsa.controlplane.netns import NETNS_DIR
from kapsa.controlplane.node import RUNS, sweep_stale_runs
from kapsa.k8s.quantity import canonical
from tests.waiting import wait_until


def _busybox_pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "sleeper",
                    "image": "kapsa.local/pause:3.2",
                    "imagePullPolicy": "Never",
                }
            ]
        },
    }


def test_the_node_is_ready_and_runs_in_a_namespace_of_its_own(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    node = control_plane.node
    assert node is not None
    ready = client.CoreV1Api(kube_api).read_node("localhost").status.conditions
    assert [c.status for c in ready if c.type == "Ready"] == ["True"]
    # The bridge and the pods' links are the namespace's, never the host's.
    host_links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=False
    ).stdout
    assert "cni0" not in host_links
    control_plane.kubectl(
        "-n", namespace, "apply", "-f", "-", input=json.dumps(_busybox_pod("sleeper"))
    )
    control_plane.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s"
    )
    links = subprocess.run(
        ["ip", "-n", node.netns.name, "-o", "link"], capture_output=True, text=True, check=False
    ).stdout
    assert "cni0" in links


CRASHING_RUN = """
import sys, json, time
from pathlib import Path
from kapsa.controlplane import ControlPlane, find_or_build_assets
plane = ControlPlane(assets=find_or_build_assets(), workdir=Path(sys.argv[1]), node=True)
plane.start()
plane.kubectl("apply", "-f", "-", input=sys.argv[2])
plane.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
print(plane.node.netns.name, flush=True)
time.sleep(600)
"""


def _shims_under(root: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in argv and str(root) in argv:
            found.append(int(proc.name))
    return found


@pytest.mark.cluster
def test_a_killed_run_is_swept_by_the_next_one(tmp_path: Path) -> None:
    workdir = tmp_path / "crashed"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CRASHING_RUN),
            str(workdir),
            json.dumps(_busybox_pod("sleeper")),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        netns = child.stdout.readline().strip()
        assert netns, "the child's node did not come up"
        assert (NETNS_DIR / netns).exists()
        assert _shims_under(RUNS / netns), "a pod's shim runs"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    # The daemons died with their parent; the pod's shim and the namespace did not.
    assert (RUNS / f"{netns}.json").exists()
    assert netns in sweep_stale_runs()
    assert not (NETNS_DIR / netns).exists()
    wait_until(lambda: not _shims_under(RUNS / netns), timeout=10, message="no shim left")
    assert not (RUNS / f"{netns}.json").exists()
    assert netns not in sweep_stale_runs()


#: What the Project schema accepts (QUANTITY_PATTERN).
QUANTITIES = st.builds(
    lambda number, fraction, suffix: f"{number}{fraction}{suffix}",
    st.integers(min_value=0, max_value=5000),
    st.sampled_from(["", ".5", ".25", ".001", ".0001", ".250", ".1000"]),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi"]),
)


@settings(max_examples=40, deadline=None)
@given(quantity=QUANTITIES)
def test_quantities_are_written_as_the_api_server_stores_them(
    control_plane: ControlPlane, quantity: str
) -> None:
    """So an unchanged Project's Deployment compares equal and causes no write."""
    body = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "max": {"memory": quantity}}]},
    }
    out = control_plane.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(body)
    )
    stored = json.loads(out.stdout)["spec"]["limits"][0]["max"]["memory"]
    assert canonical(quantity) == stored
