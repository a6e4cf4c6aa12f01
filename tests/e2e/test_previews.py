"""Flows 3 and 4: a preview per matching branch, removed when its branch goes or its TTL passes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from kapsa.controlplane import ControlPlane
from kapsa.errors import ConflictError
from kapsa.k8s.client import Kube
from kapsa.k8s.resources import PROJECT
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.simulators import CommitMessageFailPolicy
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    condition,
    get,
    history,
    moves,
    project_yaml,
)
from tests.waiting import wait_until

APP = SAMPLE_APP
STANDARD = [{"name": "dev", "branch": "main", "autoSync": True}]


def _previews(control_plane: ControlPlane, name: str) -> dict[str, dict]:
    project = get(control_plane, "project", name) or {}
    return {p["branch"]: p for p in project.get("status", {}).get("previews", [])}


def _preview_envs(control_plane: ControlPlane, name: str) -> dict[str, dict]:
    listing = get(control_plane, "-n", name, "environments", "-l", "kapsa.io/type=preview")
    return {e["spec"]["branch"]: e for e in (listing or {}).get("items", [])}


def _apply(
    control_plane: ControlPlane, git_server: GitServer, name: str, **preview: object
) -> None:
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=STANDARD,
            extra_spec={"previewEnvironments": {"enabled": True, **preview}},
        ),
    )


def _running_preview(
    control_plane: ControlPlane, name: str, branch: str, operator: OperatorProcess
) -> dict:
    return wait_until(
        lambda: (
            (e := _preview_envs(control_plane, name).get(branch))
            and e.get("status", {}).get("phase") == "Running"
            and e
        ),
        timeout=60,
        message=lambda: f"preview of {branch} Running\n{operator.tail()}",
    )


def test_branch_gets_a_preview_and_loses_it_when_the_branch_is_deleted(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "api"
    git_server.create_repo(name, files=APP)
    head = git_server.create_branch(name, "feature/new-api")
    git_server.create_branch(name, "feature/wip-draft")
    git_server.create_branch(name, "bugfix/typo")
    _apply(
        control_plane, git_server, name, include=["feature/*"], exclude=["feature/wip-*"], ttl="24h"
    )

    env = _running_preview(control_plane, name, "feature/new-api", operator)
    assert env["metadata"]["name"] == "feature-new-api"
    assert env["metadata"]["labels"]["kapsa.io/type"] == "preview"
    assert env["spec"] == {
        "project": name,
        "type": "preview",
        "branch": "feature/new-api",
        "autoSync": True,
        "secretRefs": [],
    }
    status = env["status"]
    assert status["url"] == f"https://feature-new-api.{name}.apps.corp.com"
    assert status["commit"] == head
    image = get(control_plane, "-n", name, "image.kpack.io", f"{name}-feature-new-api")
    assert image["spec"]["source"]["git"]["revision"] == head
    assert image["spec"]["additionalTags"] == [
        f"{registry_server.server}/apps/{name}:feature-new-api-{head[:7]}"
    ]
    assert status["image"] == image["status"]["latestImage"]
    ingress = get(control_plane, "-n", name, "ingress", "feature-new-api")
    assert ingress["spec"]["tls"][0]["hosts"] == [f"feature-new-api.{name}.apps.corp.com"]
    deployed = wait_until(lambda: status.get("expiresAt"), message="expiresAt set")
    last = status["lastTransition"]["at"]
    hours = (_seconds(deployed) - _seconds(last)) / 3600
    assert 23.9 < hours <= 24.01, (deployed, last)
    # Excluded and non-matching branches get nothing.
    assert set(_preview_envs(control_plane, name)) == {"feature/new-api"}
    assert set(_previews(control_plane, name)) == {"feature/new-api"}

    git_server.delete_branch(name, "feature/new-api")
    wait_until(
        lambda: not _preview_envs(control_plane, name),
        timeout=60,
        message=lambda: "preview removed\n" + operator.tail(),
    )
    # The garbage collector takes the children through their ownerReferences.
    for kind in ("deployment", "service", "ingress"):
        wait_until(
            lambda kind=kind: get(control_plane, "-n", name, kind, "feature-new-api") is None,
            timeout=30,
            message=f"{kind} collected",
        )
    wait_until(
        lambda: get(control_plane, "-n", name, "image.kpack.io", f"{name}-feature-new-api") is None,
        timeout=30,
        message="Image gone",
    )
    wait_until(
        lambda: not _previews(control_plane, name),
        timeout=30,
        message="preview dropped from the Project's status",
    )
    assert moves(history(operator_ledger, name), kind="Environment", name="feature-new-api")[
        -2:
    ] == [("Running", "Expiring", "branch_deleted"), ("Expiring", "Deleted", "removed")]


def test_ttl_expires_a_preview_and_only_a_newer_commit_brings_it_back(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "ttl"
    git_server.create_repo(name, files=APP)
    git_server.create_branch(name, "feature/short")
    _apply(control_plane, git_server, name, include=["feature/*"], ttl="8s")
    first = _running_preview(control_plane, name, "feature/short", operator)
    first_uid = first["metadata"]["uid"]

    wait_until(
        lambda: not _preview_envs(control_plane, name),
        timeout=60,
        message=lambda: "preview expired\n" + operator.tail(),
    )
    entry = _previews(control_plane, name)["feature/short"]
    assert entry["expiredCommit"] == first["status"]["commit"]
    rows = moves(history(operator_ledger, name), kind="Environment", name="feature-short")
    assert rows[-2:] == [("Running", "Expiring", "ttl_expired"), ("Expiring", "Deleted", "removed")]
    # Polls go on (every second); the branch still exists, but its commit has expired.
    polls = _polls(operator.log)
    wait_until(lambda: _polls(operator.log) >= polls + 3, timeout=30, message="three more polls")
    assert not _preview_envs(control_plane, name)

    newer = git_server.commit(name, branch="feature/short", files={"app.py": "print(2)\n"})
    second = _running_preview(control_plane, name, "feature/short", operator)
    assert second["metadata"]["uid"] != first_uid
    assert second["status"]["commit"] == newer


def test_a_failed_listing_deletes_nothing(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "outage"
    git_server.create_repo(name, files=APP)
    git_server.create_branch(name, "feature/stay")
    _apply(control_plane, git_server, name, include=["feature/*"])
    env = _running_preview(control_plane, name, "feature/stay", operator)

    repo = git_server.path_for(name)
    hidden = repo.with_name(repo.name + ".away")
    repo.rename(hidden)  # git daemon now refuses the repository: every listing fails
    try:
        wait_until(
            lambda: (
                condition(get(control_plane, "project", name), "SourceReachable").get("status")
                == "False"
            ),
            timeout=30,
            message="SourceReachable=False",
        )
        reachable = condition(get(control_plane, "project", name), "SourceReachable")
        assert reachable["reason"] == "SourceUnreachable"
        # Several failed polls later, the preview and the standard environment still run.
        poll_count = _listing_failures(operator.log)
        wait_until(
            lambda: _listing_failures(operator.log) >= poll_count + 3,
            timeout=30,
            message="three more failed listings",
        )
        still = _preview_envs(control_plane, name)["feature/stay"]
        assert still["metadata"]["uid"] == env["metadata"]["uid"]
        assert still["status"]["phase"] == "Running"
        assert get(control_plane, "-n", name, "environment", "dev")["status"]["phase"] == "Running"
    finally:
        hidden.rename(repo)
    wait_until(
        lambda: (
            condition(get(control_plane, "project", name), "SourceReachable").get("status")
            == "True"
        ),
        timeout=30,
        message="reachable again",
    )
    assert (
        _preview_envs(control_plane, name)["feature/stay"]["metadata"]["uid"]
        == env["metadata"]["uid"]
    )


def test_max_count_caps_live_previews_and_says_so(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "many"
    git_server.create_repo(name, files=APP)
    for i in range(100):
        git_server.create_branch(name, f"feature/b{i:03d}")
    _apply(control_plane, git_server, name, include=["feature/*"], maxCount=3)
    wait_until(
        lambda: (
            len(
                [
                    e
                    for e in _preview_envs(control_plane, name).values()
                    if e.get("status", {}).get("phase") == "Running"
                ]
            )
            == 3
        ),
        timeout=90,
        message=lambda: "three previews Running\n" + operator.tail(),
    )
    capped = wait_until(
        lambda: (
            condition(get(control_plane, "project", name), "PreviewsCapped").get("status") == "True"
            and condition(get(control_plane, "project", name), "PreviewsCapped")
        ),
        timeout=30,
        message="PreviewsCapped",
    )
    assert capped["reason"] == "MaxCountReached"
    assert "97 branches wait" in capped["message"]
    assert len(_preview_envs(control_plane, name)) == 3
    waiting = [p for p in _previews(control_plane, name).values() if p.get("waiting")]
    assert len(waiting) == 97


def _listing_failures(log: Path) -> int:
    return log.read_text(errors="replace").count("listing outage failed")


def _polls(log: Path) -> int:
    return log.read_text(errors="replace").count("Operator.poll")


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _forget_expiry(control_plane: ControlPlane, name: str) -> None:
    """Take expiredCommit out of the Project's status, as a lost write, a status rewrite or a
    restore from a backup taken before the expiry would."""
    kube = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    for _ in range(20):
        project = kube.get(PROJECT, name) or {}
        status = project.get("status") or {}
        for entry in status.get("previews", []):
            entry.pop("expiredCommit", None)
        try:
            kube.replace_status(PROJECT, {**project, "status": status})
            return
        except ConflictError:
            continue  # the operator wrote in between: read again
    raise AssertionError("could not rewrite the Project's status")


def test_an_expired_preview_stays_gone_when_status_forgets_the_expiry(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    # The shape users reported: one slot, two matching branches, a short TTL.
    name = "forgotten"
    git_server.create_repo(name, files=APP)
    git_server.create_branch(name, "feature/a")
    _apply(control_plane, git_server, name, include=["feature/a"], ttl="6s", maxCount=1)
    first = _running_preview(control_plane, name, "feature/a", operator)
    wait_until(
        lambda: not _preview_envs(control_plane, name),
        timeout=60,
        message=lambda: "preview expired\n" + operator.tail(),
    )
    git_server.create_branch(name, "feature/b")
    _apply(control_plane, git_server, name, include=["feature/*"], ttl="6s", maxCount=1)

    _forget_expiry(control_plane, name)

    # Polls go on every second; the ledger, not status, tells that feature/a expired at its head.
    polls = _polls(operator.log)
    wait_until(lambda: _polls(operator.log) >= polls + 4, timeout=30, message="four more polls")
    assert "feature/a" not in _preview_envs(control_plane, name)
    entry = _previews(control_plane, name)["feature/a"]
    assert entry["expiredCommit"] == first["status"]["commit"]
    incarnations = {
        e.uid
        for e in history(operator_ledger, name)
        if e.kind == "Environment" and e.name == "feature-a"
    }
    assert len(incarnations) == 1, "feature/a's preview was created again"


def test_a_preview_whose_first_build_fails_says_so_on_the_project(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    build_policy: CommitMessageFailPolicy,
) -> None:
    name = "firstfail"
    git_server.create_repo(name, files=APP)
    git_server.create_branch(name, "feature/broken")
    broken = git_server.commit(
        name,
        branch="feature/broken",
        files={"app.py": "syntax error(\n"},
        message=f"{build_policy.MARKER} npm install failed: exit status 1",
    )
    _apply(control_plane, git_server, name, include=["feature/*"], ttl="1h")

    failed = wait_until(
        lambda: (
            (c := condition(get(control_plane, "project", name), "PreviewBuildSucceeded"))
            and c["status"] == "False"
            and c
        ),
        timeout=60,
        message=lambda: "PreviewBuildSucceeded=False\n" + operator.tail(),
    )
    assert failed["reason"] == "BuildFailed"
    assert "feature/broken: " in failed["message"] and "npm install failed" in failed["message"]
    assert not _preview_envs(control_plane, name)
    project = get(control_plane, "project", name)
    events = get(
        control_plane,
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.uid={project['metadata']['uid']},reason=PreviewBuildFailed",
    )["items"]
    assert len(events) == 1
    assert f"build of {broken[:12]} failed" in events[0]["message"]
    assert events[0]["type"] == "Warning"

    fixed = git_server.commit(name, branch="feature/broken", files={"app.py": "print(1)\n"})
    preview = _running_preview(control_plane, name, "feature/broken", operator)
    assert preview["status"]["commit"] == fixed
    assert condition(get(control_plane, "project", name), "PreviewBuildSucceeded")["status"] == (
        "True"
    )
    # The metrics count previews' ends as well as their starts: one failure, one success.
    scraped = _metrics(operator)
    finished = "kapsa_builds_finished_total"
    assert scraped[(finished, frozenset({("type", "preview"), ("outcome", "failed")}))] == 1
    assert scraped[(finished, frozenset({("type", "preview"), ("outcome", "succeeded")}))] == 1
    assert scraped[("kapsa_builds_started_total", frozenset({("type", "preview")}))] >= 2


def _metrics(operator: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(f"{operator.internal_url()}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_max_age_caps_a_preview_that_ttl_would_keep(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "capped"
    git_server.create_repo(name, files=APP)
    git_server.create_branch(name, "feature/busy")
    # An hour of inactivity would keep it; six seconds from its creation end it.
    _apply(control_plane, git_server, name, include=["feature/*"], ttl="1h", maxAge="6s")
    preview = _running_preview(control_plane, name, "feature/busy", operator)
    created = _seconds(preview["metadata"]["creationTimestamp"])
    assert _seconds(preview["status"]["expiresAt"]) == created + 6

    wait_until(
        lambda: not _preview_envs(control_plane, name),
        timeout=60,
        message=lambda: "preview removed at its maxAge\n" + operator.tail(),
    )
    rows = moves(history(operator_ledger, name), kind="Environment", name="feature-busy")
    assert ("Running", "Expiring", "ttl_expired") in rows
