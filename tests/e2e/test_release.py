"""Release control as users drive it: rollback with quarantine, auto rollback, promotion on
evidence, and point-in-time answers, with `kapsa` and kubectl against the real control plane."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from kapsa.controlplane import ControlPlane
from kapsa.k8s.resources import ENVIRONMENT
from kapsa.ledger import Entry
from kapsa.reconcile.project import environment_manifest
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.stack import KAPSA
from tests.e2e.conftest import Platform
from tests.e2e.harness import SAMPLE_APP, OperatorProcess, condition, get, history, project_yaml
from tests.waiting import wait_until

APP = SAMPLE_APP
DEV_AND_PROD = [
    {"name": "dev", "branch": "main", "autoSync": True},
    {"name": "prod", "branch": "main", "autoSync": False},
]


def _kapsa(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPSA, *args, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _env(control_plane: ControlPlane, project: str, env: str) -> dict[str, Any]:
    return get(control_plane, "-n", project, "environment", env) or {}


def _status(control_plane: ControlPlane, project: str, env: str) -> dict[str, Any]:
    return _env(control_plane, project, env).get("status") or {}


def _running_on(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    project: str,
    env: str,
    commit: str,
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait until `env` is Running `commit` and its Deployment runs that image; its status."""

    def check() -> dict[str, Any]:
        status = _status(control_plane, project, env)
        if status.get("phase") != "Running" or status.get("commit") != commit:
            return {}
        deployment = get(control_plane, "-n", project, "deployment", env) or {}
        containers = (
            deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
        )
        return status if containers[0].get("image") == status["image"] else {}

    return wait_until(
        check, timeout=timeout, message=lambda: f"{env} Running {commit[:7]}\n{operator.tail()}"
    )


def _deploy(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    name: str,
    *,
    environments: list[dict[str, Any]],
    app: dict[str, Any] | None = None,
) -> str:
    commit = git_server.create_repo(name, files=APP)
    extra = {"app": app} if app else None
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name, url=git_server.url_for(name), environments=environments, extra_spec=extra
        ),
    )
    for env in environments:
        _running_on(control_plane, operator, name, env["name"], commit)
    return commit


def _rows(ledger: str, project: str, env: str) -> list[Entry]:
    return [e for e in history(ledger, project) if e.kind == "Environment" and e.name == env]


def _polls_seen(control_plane: ControlPlane, project: str, *, after: datetime) -> None:
    """Polls after `after` have listed the branches, and the Project and its environments were
    reconciled since. A poll that finds nothing new writes nothing, so the test lets two poll
    intervals pass, then changes the Project's spec (the same interval, spelled differently)
    and waits until the Project's status shows that generation: that reconcile, and those of
    the environments it triggers, saw the branch heads as the polls left them."""
    wait_until(
        lambda: datetime.now(UTC) >= after + timedelta(seconds=2),
        timeout=5,
        message="two poll intervals after the release",
    )
    project_obj = get(control_plane, "project", project)
    interval = project_obj["spec"]["source"]["pollInterval"]
    control_plane.kubectl(
        "patch",
        "project",
        project,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"source": {"pollInterval": "1000ms" if interval == "1s" else "1s"}}}),
    )
    generation = project_obj["metadata"]["generation"] + 1
    wait_until(
        lambda: (
            (get(control_plane, "project", project) or {})
            .get("status", {})
            .get("observedGeneration")
            == generation
        ),
        timeout=30,
        message="the Project reconciled after the spec change",
    )


def _builds(control_plane: ControlPlane, project: str) -> dict[str, Any]:
    listing = get(control_plane, "-n", project, "images.kpack.io") or {"items": []}
    return {
        i["metadata"]["name"]: (
            i["spec"]["source"]["git"]["revision"],
            i.get("status", {}).get("buildCounter"),
        )
        for i in listing["items"]
    }


def test_rollback_returns_to_a_ready_release_and_quarantines_the_commit_it_leaves(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    tmp_path: Path,
) -> None:
    name = "store"
    first = _deploy(control_plane, git_server, operator, name, environments=DEV_AND_PROD)
    image_a = _status(control_plane, name, "dev")["image"]
    second = git_server.commit(
        name, branch="main", files={"app.py": "print('v2')\n"}, message="Make v2"
    )
    image_b = _running_on(control_plane, operator, name, "dev", second)["image"]
    assert image_b != image_a
    # The ledger keeps whole seconds: let the rollback start in a later one than B's rollout,
    # so that the point-in-time questions below have one answer.
    b_seen = datetime.now(UTC)
    wait_until(
        lambda: datetime.now(UTC) >= b_seen + timedelta(seconds=1.1),
        timeout=5,
        message="the next second",
    )

    done = _kapsa(control_plane, "rollback", name, "dev", "--to", first[:12])
    assert done.returncode == 0, done.stderr
    assert f"Rolling back to {first[:12]}" in done.stdout
    rolled_back = _running_on(control_plane, operator, name, "dev", first)
    assert rolled_back["image"] == image_a
    assert [q["commit"] for q in rolled_back["quarantinedCommits"]] == [second]
    assert rolled_back["release"]["outcome"] == "Accepted"
    assert condition(_env(control_plane, name, "dev"), "ReleaseRefused")["status"] == "False"

    rows = _rows(operator_ledger, name, "dev")
    start = next(e for e in rows if e.trigger == "rollback_started")
    assert (start.from_state, start.to_state, start.reason, start.source, start.commit) == (
        "Running",
        "Deploying",
        "RollbackStarted",
        "rollback",
        first,
    )
    assert f"commit {second[:12]} is quarantined" in start.message
    ready = rows[-1]
    assert (ready.trigger, ready.to_state, ready.source, ready.commit) == (
        "rollout_ready",
        "Running",
        "rollback",
        first,
    )

    # The next polls still see `second` as the head of main: auto-sync stays on and skips it.
    _polls_seen(control_plane, name, after=ready.at)
    dev = _env(control_plane, name, "dev")
    assert dev["spec"]["autoSync"] is True
    assert dev["status"]["commit"] == first
    assert dev["status"]["phase"] == "Running"
    assert [e.trigger for e in _rows(operator_ledger, name, "dev")][-1] == "rollout_ready"
    assert get(control_plane, "project", name)["status"]["branches"][0]["builtCommit"] == second

    # A newer commit ends the wait: dev moves to it by itself.
    third = git_server.commit(
        name, branch="main", files={"app.py": "print('v3')\n"}, message="Make v3"
    )
    moved = _running_on(control_plane, operator, name, "dev", third)
    assert moved["image"] not in (image_a, image_b)
    assert _status(control_plane, name, "prod")["commit"] == first

    # Point in time: what ran, and which transition put it there.
    rows = _rows(operator_ledger, name, "dev")
    b_ready = next(e for e in rows if e.to_state == "Running" and e.commit == second)
    at_b = _history_at(operator_ledger, name, "dev", b_ready.at)
    assert (at_b["commit"], at_b["entry"]["trigger"], at_b["entry"]["seq"]) == (
        second,
        "rollout_ready",
        b_ready.seq,
    )
    at_rollback = _history_at(operator_ledger, name, "dev", ready.at)
    assert (at_rollback["commit"], at_rollback["image"]) == (first, image_a)
    assert (at_rollback["entry"]["source"], at_rollback["entry"]["seq"]) == ("rollback", ready.seq)

    # The commits between releases, as the ledger numbers them: 1 first, 2 second, 3 first
    # again (the rollback), 4 third.
    cache = str(tmp_path / "cli-git")
    latest = _kapsa(
        control_plane,
        "diff-releases",
        name,
        "dev",
        "--ledger",
        operator_ledger,
        "--git-cache",
        cache,
    )
    assert latest.returncode == 0, latest.stderr
    assert f"release 3 ({first[:12]}) -> release 4 ({third[:12]})" in latest.stdout
    assert "Make v2" in latest.stdout and "Make v3" in latest.stdout
    assert "removed" not in latest.stdout
    backwards = _kapsa(
        control_plane,
        "diff-releases",
        name,
        "dev",
        "--from",
        "2",
        "--to",
        "3",
        "--ledger",
        operator_ledger,
        "--git-cache",
        cache,
    )
    assert backwards.returncode == 0, backwards.stderr
    assert "removed (rolled back)" in backwards.stdout
    assert "Make v2" in backwards.stdout and "Make v3" not in backwards.stdout

    # One numbering: the releases `history --deployments` shows are the ones `--steps` counts.
    listed = _kapsa_plain(
        "history", name, "--env", "dev", "--deployments", "--ledger", operator_ledger, "-o", "json"
    )
    assert [(d["release"], d["commit"]) for d in json.loads(listed.stdout)] == [
        (1, first),
        (2, second),
        (3, first),
        (4, third),
    ]
    # Two steps back from release 4 is release 2: second, quarantined history that ran ready.
    steps = _kapsa(
        control_plane, "rollback", name, "dev", "--steps", "2", "--ledger", operator_ledger
    )
    assert steps.returncode == 0, steps.stderr
    assert f"back to release 2 ({second[:12]})" in steps.stderr
    back_on_b = _running_on(control_plane, operator, name, "dev", second)
    assert back_on_b["image"] == image_b
    assert {q["commit"] for q in back_on_b["quarantinedCommits"]} == {third}
    control_plane.kubectl("delete", "project", name, "--wait=false")


def test_rollback_is_refused_with_the_reason_and_nothing_running_changes(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "forum"
    first = _deploy(
        control_plane,
        git_server,
        operator,
        name,
        environments=[{"name": "dev", "branch": "main", "autoSync": True}],
    )
    image_a = _status(control_plane, name, "dev")["image"]
    second = git_server.commit(name, branch="main", files={"app.py": "print('v2')\n"})
    image_b = _running_on(control_plane, operator, name, "dev", second)["image"]
    rows_before = len(_rows(operator_ledger, name, "dev"))

    # A commit of the repository that never ran in dev (its branch has no environment).
    git_server.create_branch(name, "experiment")
    never_ran = git_server.commit(name, branch="experiment", files={"app.py": "print('x')\n"})
    refused = _kapsa(control_plane, "rollback", name, "dev", "--to", never_ran)
    assert refused.returncode == 1
    assert f"commit {never_ran} never ran in dev" in refused.stderr
    dev = _env(control_plane, name, "dev")
    refusal = condition(dev, "ReleaseRefused")
    assert (refusal["status"], refusal["reason"]) == ("True", "RollbackRefused")
    assert "never ran in dev" in refusal["message"]
    assert dev["status"]["release"]["outcome"] == "Refused"

    # The registry lost the image of the first commit: the rollback would pull nothing.
    digest = image_a.split("@", 1)[1]
    deleted = requests.delete(
        f"{registry_server.url}/v2/apps/{name}/manifests/{digest}",
        auth=(registry_server.username, registry_server.password),
        timeout=10,
    )
    assert deleted.status_code == 202, deleted.text
    gone = _kapsa(control_plane, "rollback", name, "dev", "--to", first[:7])
    assert gone.returncode == 1
    assert f"{image_a} is no longer in the registry" in gone.stderr

    # Same request through kubectl only: the operator gives the same answer.
    control_plane.kubectl(
        "-n",
        name,
        "patch",
        "environment",
        "dev",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"release": {"rollbackTo": first, "requestedAt": "by-kubectl"}}}),
    )
    answer = wait_until(
        lambda: (
            (r := _status(control_plane, name, "dev").get("release") or {})
            .get("request", {})
            .get("requestedAt")
            == "by-kubectl"
            and r
        ),
        timeout=30,
        message=lambda: "the kubectl request answered\n" + operator.tail(),
    )
    assert answer["outcome"] == "Refused"
    assert "no longer in the registry" in answer["message"]

    dev = _env(control_plane, name, "dev")
    assert (dev["status"]["phase"], dev["status"]["image"]) == ("Running", image_b)
    assert "quarantinedCommits" not in dev["status"] or not dev["status"]["quarantinedCommits"]
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image_b
    assert len(_rows(operator_ledger, name, "dev")) == rows_before
    control_plane.kubectl("delete", "project", name, "--wait=false")


def test_a_rollout_that_misses_its_deadline_rolls_back_by_itself(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "radio"
    first = _deploy(
        control_plane,
        git_server,
        operator,
        name,
        environments=[{"name": "dev", "branch": "main", "autoSync": True, "autoRollback": True}],
        app={"port": 8080, "rolloutDeadline": "4s"},
    )
    image_a = _status(control_plane, name, "dev")["image"]

    # A commit whose app exits at start: its pods never become ready on the real node.
    bad = git_server.commit(name, branch="main", files={"serve.sh": "exit 3\n"})

    def rolled_back() -> dict[str, Any]:
        status = _status(control_plane, name, "dev")
        done = status.get("phase") == "Running" and status.get("quarantinedCommits")
        return status if done else {}

    back = wait_until(
        rolled_back, timeout=60, message=lambda: "dev rolled back\n" + operator.tail()
    )
    assert (back["image"], back["commit"]) == (image_a, first)
    assert [(q["commit"], q["reason"]) for q in back["quarantinedCommits"]] == [
        (bad, "auto-rollback")
    ]
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image_a

    rows = _rows(operator_ledger, name, "dev")
    tail = [(e.from_state, e.to_state, e.trigger, e.commit, e.source) for e in rows[-4:]]
    assert tail == [
        ("Running", "Deploying", "rollout_started", bad, None),
        ("Deploying", "Failed", "rollout_deadline_exceeded", bad, None),
        ("Failed", "Deploying", "auto_rollback", first, "auto-rollback"),
        ("Deploying", "Running", "rollout_ready", first, "auto-rollback"),
    ]
    assert rows[-2].reason == "AutoRollback"
    assert "missed its deadline" in rows[-2].message

    # The bad commit stays the head of main; later polls leave dev where it is.
    _polls_seen(control_plane, name, after=rows[-1].at)
    assert _status(control_plane, name, "dev")["image"] == image_a
    assert len(_rows(operator_ledger, name, "dev")) == len(rows)
    control_plane.kubectl("delete", "project", name, "--wait=false")


def test_promotion_waits_for_evidence_then_moves_the_image_without_a_rebuild(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    platform: Platform,
) -> None:
    name = "atlas"
    first = _deploy(control_plane, git_server, operator, name, environments=DEV_AND_PROD)
    second = git_server.commit(name, branch="main", files={"app.py": "print('v2')\n"})
    dev_image = _running_on(control_plane, operator, name, "dev", second)["image"]
    builds = _builds(control_plane, name)

    # Straight after dev got it, the ledger's evidence is too short.
    early = _kapsa(control_plane, "promote", name, "dev", "prod", "--min-ready", "8s")
    assert early.returncode == 1
    left = re.search(r"(\d+)s left", early.stderr)
    assert left and 1 <= int(left.group(1)) <= 8, early.stderr
    assert "less than the 8s a promotion needs" in early.stderr
    assert _status(control_plane, name, "prod")["commit"] == first

    # kubectl users get the same check, and Kapsa's own apply of the Environment keeps their
    # request (server-side apply only manages the fields Kapsa sets).
    control_plane.kubectl(
        "-n",
        name,
        "patch",
        "environment",
        "prod",
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"release": {"promoteFrom": "dev", "minReady": "1h"}}}),
    )
    answer = wait_until(
        lambda: (
            (r := _status(control_plane, name, "prod").get("release") or {})
            .get("request", {})
            .get("minReady")
            == "1h"
            and r
        ),
        timeout=30,
        message=lambda: "the kubectl promotion answered\n" + operator.tail(),
    )
    assert answer["outcome"] == "Refused" and "left" in answer["message"]
    assert (
        condition(_env(control_plane, name, "prod"), "ReleaseRefused")["reason"]
        == "PromotionRefused"
    )
    project = get(control_plane, "project", name)
    platform.kube.apply(
        ENVIRONMENT,
        environment_manifest(
            project=project,
            namespace=name,
            name="prod",
            env_type="standard",
            branch="main",
            auto_sync=False,
            secret_refs=[],
        ),
    )
    assert _env(control_plane, name, "prod")["spec"]["release"]["minReady"] == "1h"

    # Into an environment that follows its branch, a promotion would not last: refused.
    backwards = _kapsa(control_plane, "promote", name, "prod", "dev", "--min-ready", "0s")
    assert backwards.returncode == 1
    assert "autoSync: true" in backwards.stderr

    def promote() -> str:
        out = _kapsa(control_plane, "promote", name, "dev", "prod", "--min-ready", "8s")
        return out.stdout if out.returncode == 0 else ""

    promoted = wait_until(
        promote, timeout=30, interval=1, message="the promotion accepted once dev was ready for 8s"
    )
    assert "Promoting" in promoted
    prod = _running_on(control_plane, operator, name, "prod", second)
    assert prod["image"] == dev_image
    assert _builds(control_plane, name) == builds

    rows = _rows(operator_ledger, name, "prod")
    assert [(e.from_state, e.to_state, e.trigger, e.source) for e in rows[-2:]] == [
        ("Running", "Deploying", "promotion_started", "promote:dev"),
        ("Deploying", "Running", "rollout_ready", "promote:dev"),
    ]
    assert rows[-2].reason == "PromotionStarted"
    assert rows[-1].image == dev_image
    control_plane.kubectl("delete", "project", name, "--wait=false")


def _history_at(ledger: str, project: str, env: str, when: datetime) -> dict[str, Any]:
    out = _kapsa_plain(
        "history", project, "--env", env, "--at", when.isoformat(), "--ledger", ledger, "-o", "json"
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _kapsa_plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KAPSA, *args], capture_output=True, text=True, timeout=60, check=False)
