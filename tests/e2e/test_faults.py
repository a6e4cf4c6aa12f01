"""The fault suite: the operator killed at every step of recording a transition.

Each run arms a failpoint (`KAPSA_FAILPOINT`, see kapsa/faults.py) so the operator dies abruptly
the n-th time it passes that step; a fresh operator then carries on. Whatever the point, the
flows end where they should, with no duplicate build, no duplicate or missing ledger row and no
environment on a wrong image.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.conftest import Platform
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    assert_chain,
    assert_ledger_clean,
    get,
    history,
    moves,
    project_yaml,
    remove_all_projects,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)

POINTS = ["before-status", "after-status", "after-ledger"]


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_every_transition_step_converges_without_loss(
    point: str,
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator_ledger: str,
    tmp_path: Path,
) -> None:
    name = f"fault-{point}"
    first = git_server.create_repo(name, files={**SAMPLE_APP, "app.py": "print(1)\n"})
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[
                {"name": "dev", "branch": "main"},
                {"name": "prod", "branch": "main", "autoSync": False},
            ],
        ),
    )

    def run(env: dict[str, str] | None) -> OperatorProcess:
        workdir = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
        workdir.mkdir()
        return OperatorProcess(
            control_plane=control_plane,
            ledger_url=operator_ledger,
            workdir=workdir,
            extra=["--no-leader-elect"],
            env=env,
        ).start()

    # Every run dies at its third pass of the point: a transition or two complete (a pass can
    # also be a write that lost a race and is retried), the next is cut at that step, and the
    # next run must repair and carry on. Until a run finds nothing left to do.
    kills = 0
    second = None
    while True:
        process = run({"KAPSA_FAILPOINT": f"{point}:3"})
        assert process.process is not None
        try:
            process.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.stop()  # alive: no transition left to die at
            break
        assert process.process.returncode == 137, process.tail()
        kills += 1
        assert kills < 60, "the operator keeps dying at the same step: no progress"
        if kills == 2:  # mid-flow: a new commit, so the rollout path is crossed too
            second = git_server.commit(name, branch="main", files={"app.py": "print(2)\n"})
    assert second is not None, f"only {kills} kills: the flow ended before the failpoint"

    final = run(None)
    try:
        wait_for_commit(control_plane, name, "dev", second, final, timeout=90)
        wait_for_project_phase(control_plane, name, "Running", final)
        assert status_of(control_plane, "-n", name, "environment", "prod")["commit"] == first
        deployment = get(control_plane, "-n", name, "deployment", "dev")
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            == status_of(control_plane, "-n", name, "environment", "dev")["image"]
        )
        images = get(control_plane, "-n", name, "images.kpack.io")["items"]
        assert [i["metadata"]["name"] for i in images] == [f"{name}-main"]
        assert_ledger_clean(operator_ledger, name)
        rows = history(operator_ledger, name)
        assert_chain(moves(rows, kind="Project", name=name), ends="Running")
        assert_chain(moves(rows, kind="Environment", name="prod"), ends="Running")
        dev = moves(rows, kind="Environment", name="dev")
        assert_chain(dev, ends="Running")
        assert ("Running", "Deploying", "rollout_started") in dev
        print(f"{point}: {kills} kills survived, {len(rows)} ledger rows, 0 lost")
    finally:
        remove_all_projects(control_plane, final)
        final.stop()
