"""Tenancy: what one team tried against another through a Kapsa they share, and why it failed.

Each test starts from a Project that runs, tries an attack as a team member could (with the rights
to create Projects, Environments and Secrets in namespaces of their own), and checks three things:
the attack is refused with a reason on the object the attacker wrote, nothing leaks (no Secret
copied, no ledger row, no child object), and what was running keeps running untouched.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from tests.attacks import report_attack
from tests.deploy.layout import OPERATOR_MANIFEST
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    condition,
    get,
    history,
    phase_of,
    project_yaml,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)
from tests.waiting import wait_until

APP = SAMPLE_APP
ENVS = [{"name": "dev", "branch": "main", "autoSync": True}]
#: A value of the other team's Secret: it must never show up anywhere the attacker can read.
OTHER_TOKEN = "other-teams-token-0f4c1"


@pytest.fixture
def other_team(control_plane: ControlPlane) -> Iterator[str]:
    """Another team's namespace, holding a Secret with a token and a TLS key."""
    namespace = f"team-other-{secrets.token_hex(3)}"  # a deleted one lingers a while
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl(
        "-n",
        namespace,
        "create",
        "secret",
        "generic",
        "other-creds",
        "--from-literal=username=other",
        f"--from-literal=password={OTHER_TOKEN}",
        "--from-literal=tls.key=PRIVATE KEY",
    )
    yield namespace
    control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture
def operator_flags() -> list[str]:
    """The quota and container defaults deploy/kapsa-operator.yaml gives the operator."""
    manifest = yaml.safe_load_all(OPERATOR_MANIFEST.read_text())
    deployment = next(d for d in manifest if d and d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return [a for a in args if a.startswith(("--namespace-quota", "--container-"))]


def _running(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess, name: str
) -> tuple[str, str]:
    """A Project that runs dev; returns its commit and dev's Deployment resourceVersion."""
    commit = git_server.create_repo(name, files=APP)
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(name=name, url=git_server.url_for(name), environments=ENVS),
    )
    wait_for_project_phase(control_plane, name, "Running", operator)
    wait_for_commit(control_plane, name, "dev", commit, operator)
    return commit, _version(control_plane, name, "deployment", "dev")


def _version(control_plane: ControlPlane, namespace: str, *args: str) -> str:
    return str(get(control_plane, "-n", namespace, *args)["metadata"]["resourceVersion"])


def _assert_untouched(control_plane: ControlPlane, name: str, *, commit: str, version: str) -> None:
    """dev still runs the same commit from the very same Deployment object."""
    assert phase_of(control_plane, "-n", name, "environment", "dev") == "Running"
    assert status_of(control_plane, "-n", name, "environment", "dev")["commit"] == commit
    assert _version(control_plane, name, "deployment", "dev") == version


def _patch_project(control_plane: ControlPlane, name: str, patch: dict[str, Any]) -> int:
    control_plane.kubectl("patch", "project", name, "--type=merge", "-p", json.dumps(patch))
    return int(get(control_plane, "project", name)["metadata"]["generation"])


def _refused(
    control_plane: ControlPlane, operator: OperatorProcess, name: str, generation: int
) -> dict[str, Any]:
    """The Project's Ready condition once the operator answered `generation` with False."""

    def answered() -> dict[str, Any] | None:
        project = get(control_plane, "project", name)
        ready = condition(project, "Ready")
        if project["status"].get("observedGeneration") == generation and ready["status"] == "False":
            return ready
        return None

    found = wait_until(answered, timeout=30, message=lambda: f"{name} refused\n{operator.tail()}")
    assert found is not None
    return found


def _secret(
    control_plane: ControlPlane, name: str, annotations: dict[str, str], **data: str
) -> None:
    """A Secret in kapsa-system with `data` and `annotations` (replacing any of that name)."""
    control_plane.kubectl("-n", "kapsa-system", "delete", "secret", name, check=False)
    args = [f"--from-literal={k.replace('_', '.')}={v}" for k, v in data.items()]
    control_plane.kubectl("-n", "kapsa-system", "create", "secret", "generic", name, *args)
    if annotations:
        pairs = [f"{k}={v}" for k, v in annotations.items()]
        control_plane.kubectl("-n", "kapsa-system", "annotate", "secret", name, *pairs)


def test_a_project_uses_only_secrets_of_its_namespace_or_shared_with_it_by_name(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    other_team: str,
) -> None:
    """Attack 1: a secretRef into another team's namespace, or to a Secret shared with
    someone else, for another host, or without git keys. Each is refused before anything is
    copied or sent, and the running environment does not notice."""
    name = "tenant"
    commit, version = _running(control_plane, git_server, operator, name)
    rows = len(history(operator_ledger, name))
    shared = "kapsa.io/shared-with-projects"
    host = "kapsa.io/git-host"
    _secret(control_plane, "for-someone-else", {shared: "someone-else"}, password=OTHER_TOKEN)
    _secret(
        control_plane,
        "for-another-host",
        {shared: f"x,{name}", host: "git.corp.com"},
        password=OTHER_TOKEN,
    )
    _secret(control_plane, "not-git", {shared: name, host: "127.0.0.1"}, tls_key="PRIVATE KEY")
    attempts = [
        ({"name": "other-creds", "namespace": other_team}, "SecretNotShared"),
        ({"name": "for-someone-else"}, "SecretNotShared"),
        ({"name": "for-another-host", "namespace": "kapsa-system"}, "SecretHostMismatch"),
        ({"name": "not-git"}, "InvalidSecret"),
    ]
    try:
        for ref, reason in attempts:
            # A merge patch: `namespace: None` drops the one of the previous attempt.
            patch = {"secretRef": {"namespace": None, **ref}}
            generation = _patch_project(control_plane, name, {"spec": {"source": {"git": patch}}})
            ready = _refused(control_plane, operator, name, generation)
            assert (ready["reason"], ref["name"] in ready["message"]) == (reason, True), ready
            copied = get(control_plane, "-n", name, "secret", "kapsa-git")
            assert copied is None
            _assert_untouched(control_plane, name, commit=commit, version=version)
            seen = json.dumps(get(control_plane, "project", name)) + operator.log.read_text(
                "utf-8", "replace"
            )
            leaked_rows = len(history(operator_ledger, name)) - rows
            assert (OTHER_TOKEN in seen, leaked_rows) == (False, 0)
            report_attack(1, f"secretRef {ref['name']}", refused_as=reason)

        # The way back: no secretRef (a public repository) and the Project is Ready again.
        control_plane.kubectl(
            "patch",
            "project",
            name,
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/spec/source/git/secretRef"}]),
        )
        wait_until(
            lambda: condition(get(control_plane, "project", name), "Ready").get("status") == "True",
            timeout=30,
            message=lambda: f"{name} Ready again\n{operator.tail()}",
        )
        _assert_untouched(control_plane, name, commit=commit, version=version)
    finally:
        for secret in ("for-someone-else", "for-another-host", "not-git"):
            control_plane.kubectl("-n", "kapsa-system", "delete", "secret", secret, check=False)


def _environment(*, name: str, namespace: str, project: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kapsa.io/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": name, "namespace": namespace, "finalizers": ["kapsa.io/ledger"]},
            "spec": {"project": project, "branch": "main"},
        }
    )


def test_an_environment_cannot_claim_another_teams_project(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    other_team: str,
) -> None:
    """Attack 2: an Environment naming someone else's Project, in the attacker's namespace or
    made by hand in the Project's own. Neither runs the image, takes a host or writes history."""
    name = "victim"
    commit, version = _running(control_plane, git_server, operator, name)
    rows = history(operator_ledger, name)
    claims = [("claim", other_team), ("stray", name)]
    try:
        for env_name, namespace in claims:
            control_plane.kubectl(
                "apply",
                "-f",
                "-",
                input=_environment(name=env_name, namespace=namespace, project=name),
            )
        for env_name, namespace in claims:
            ready = wait_until(
                lambda env_name=env_name, namespace=namespace: condition(
                    get(control_plane, "-n", namespace, "environment", env_name), "Ready"
                ),
                timeout=30,
                message=lambda: f"claims refused\n{operator.tail()}",
            )
            assert ready["status"] == "False"
            assert ready["reason"] == "ProjectMismatch"
            assert get(control_plane, "-n", namespace, "deployment", env_name) is None
            assert get(control_plane, "-n", namespace, "ingress", env_name) is None
            assert get(control_plane, "-n", namespace, "service", env_name) is None
            found = get(control_plane, "-n", namespace, "environment", env_name)
            assert "host" not in (found.get("status") or {})
        assert get(control_plane, "-n", other_team, "deployments")["items"] == []
        assert history(operator_ledger, name) == rows
        for env_name, namespace in claims:
            report_attack(2, f"Environment {namespace}/{env_name}", refused_as="ProjectMismatch")
        summaries = status_of(control_plane, "project", name)["environments"]
        assert [e["name"] for e in summaries] == ["dev"]
        _assert_untouched(control_plane, name, commit=commit, version=version)
    finally:
        for env_name, namespace in claims:
            control_plane.kubectl(
                "-n", namespace, "delete", "environment", env_name, "--wait=false", check=False
            )
    # Deleting a refused claim is not held up by the finalizer its author put on it.
    for env_name, namespace in claims:
        wait_until(
            lambda env_name=env_name, namespace=namespace: (
                get(control_plane, "-n", namespace, "environment", env_name) is None
            ),
            timeout=30,
            message=lambda: f"claims deleted\n{operator.tail()}",
        )
    assert history(operator_ledger, name) == rows
    _assert_untouched(control_plane, name, commit=commit, version=version)


def test_a_url_that_cannot_be_parsed_gets_a_status_with_the_reason(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    """Attack 4, last part: a bracketed host that made the URL parser raise left the Project
    without any status; now it is refused like every other unsafe URL."""
    name = "brackets"
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(name=name, url="ssh://[-oProxyCommand=id]/x", environments=ENVS),
    )
    ready = wait_until(
        lambda: condition(get(control_plane, "project", name), "Ready"),
        timeout=30,
        message=lambda: f"{name} has a Ready condition\n{operator.tail()}",
    )
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSource")
    assert "cannot be parsed" in ready["message"]
    report_attack(4, "a bracketed host that raised ValueError", refused_as="InvalidSource")


def test_a_project_cannot_outgrow_its_bounds_and_keeps_running(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    """Attack 6: a 1ms poll, durations that overflowed timedelta in every reconcile, and more
    matching branches than status should hold. The Project runs, says what it clamped, keeps
    status small, and its namespace carries the platform's quota."""
    name = "bounded"
    commit = git_server.create_repo(name, files=APP)
    branches = 150
    lines = "".join(f"create refs/heads/feature/{i:03d} {commit}\n" for i in range(branches))
    subprocess.run(
        ["git", "-C", str(git_server.path_for(name)), "update-ref", "--stdin"],
        input=lines,
        text=True,
        check=True,
    )
    huge = "99999999999999h"
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            poll="1ms",
            environments=ENVS,
            extra_spec={
                "app": {"port": 8080, "rolloutDeadline": huge},
                "previewEnvironments": {"enabled": True, "maxCount": 0, "ttl": huge},
            },
        ),
    )
    wait_for_project_phase(control_plane, name, "Running", operator)
    wait_for_commit(control_plane, name, "dev", commit, operator)
    project = wait_until(
        lambda: (
            (found := get(control_plane, "project", name))
            and condition(found, "PreviewsCapped").get("status") == "True"
            and found
        ),
        timeout=30,
        message=lambda: f"{name} previews capped\n{operator.tail()}",
    )
    raised = condition(project, "PollIntervalRaised")
    assert (raised["status"], raised["reason"]) == ("True", "BelowMinimum")
    assert "1ms" in raised["message"]
    assert f"{branches} branches wait" in condition(project, "PreviewsCapped")["message"]
    assert len(project["status"]["previews"]) == 100
    assert all(p["waiting"] for p in project["status"]["previews"])

    quota = get(control_plane, "-n", name, "resourcequota", "kapsa-quota")
    assert quota["spec"]["hard"]["pods"] == "50"
    limits = get(control_plane, "-n", name, "limitrange", "kapsa-limits")
    assert limits["spec"]["limits"][0]["default"] == {"cpu": "2", "memory": "2Gi"}
    for owned in (quota, limits):
        assert owned["metadata"]["ownerReferences"][0]["uid"] == project["metadata"]["uid"]
    assert phase_of(control_plane, "-n", name, "environment", "dev") == "Running"
    report_attack(
        6, "pollInterval 1ms, overflowing durations, 150 waiting previews", refused_as="clamp"
    )


@pytest.mark.parametrize(
    "name", ["kube-tools", "kapsa-system", "default", "openshift-console", "has.a.dot"]
)
def test_a_project_never_takes_a_reserved_namespace(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess, name: str
) -> None:
    """Attack 7: the Project's name would become (and own, and delete with it) a namespace
    that belongs to the cluster, to Kapsa, or to a prefix the platform keeps for itself."""
    existed = get(control_plane, "namespace", name) is not None
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(name=name, url=git_server.url_for("reserved"), environments=ENVS),
    )
    ready = wait_until(
        lambda: condition(get(control_plane, "project", name), "Ready"),
        timeout=30,
        message=lambda: f"{name} refused\n{operator.tail()}",
    )
    assert (ready["status"], ready["reason"]) == ("False", "NamespaceReserved")
    namespace = get(control_plane, "namespace", name)
    assert (namespace is not None) == existed
    if namespace is not None:
        assert not namespace["metadata"].get("ownerReferences")
    report_attack(7, f"Project named {name}", refused_as="NamespaceReserved")


def test_a_repository_with_a_million_refs_is_refused_and_other_projects_keep_polling(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    """Attack 3: a remote advertising more branches than Kapsa reads. Its Project says so and
    keeps what it had; another Project's new commit still rolls out on the next poll."""
    name = "neighbour"
    commit, _ = _running(control_plane, git_server, operator, name)
    huge = "refs-galore"
    head = git_server.create_repo(huge, files=APP)
    lines = "".join(f"create refs/heads/r/{index:05d} {head}\n" for index in range(10_001))
    subprocess.run(
        ["git", "-C", str(git_server.path_for(huge)), "update-ref", "--stdin"],
        input=lines,
        text=True,
        check=True,
    )
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(name=huge, url=git_server.url_for(huge), environments=ENVS),
    )
    reachable = wait_until(
        lambda: (
            (found := condition(get(control_plane, "project", huge), "SourceReachable"))
            and found.get("status") == "False"
            and found
        ),
        timeout=60,
        message=lambda: f"{huge} refused\n{operator.tail()}",
    )
    assert reachable["reason"] == "ListingTooLarge"
    assert "more than 10000 branches" in reachable["message"]

    newer = git_server.commit(name, branch="main", files={"app.py": "print('newer')\n"})
    wait_for_commit(control_plane, name, "dev", newer, operator)
    assert newer != commit
    report_attack(3, "10,001 branches", refused_as="ListingTooLarge")


def test_a_project_cannot_push_to_another_projects_repository(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    """A team naming another team's `build.repository` would swap the images it runs."""
    owner = "repo-owner"
    commit, before = _running(control_plane, git_server, operator, owner)
    thief = "repo-thief"
    git_server.create_repo(thief, files=APP)
    manifest = yaml.safe_load(
        project_yaml(name=thief, url=git_server.url_for(thief), environments=ENVS)
    )
    manifest["spec"]["build"]["repository"] = f"apps/{owner}"
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    refused = wait_until(
        lambda: (
            (found := condition(get(control_plane, "project", thief), "Ready"))
            and found.get("reason") == "RepositoryTaken"
            and found
        ),
        timeout=30,
        message=lambda: f"{thief} refused\n{operator.tail()}",
    )
    assert f"belongs to Project {owner}" in refused["message"]
    assert get(control_plane, "-n", thief, "images.kpack.io")["items"] == []  # nothing built
    # The owner's environment is untouched: same commit, same Deployment.
    assert status_of(control_plane, "-n", owner, "environment", "dev")["commit"] == commit
    assert _version(control_plane, owner, "deployment", "dev") == before
    report_attack(
        10, f"build.repository apps/{owner} of another Project", refused_as="RepositoryTaken"
    )


def test_the_operators_git_runs_where_it_cannot_open_the_token(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    """Attack 9's last part: the operator as started confines every git it runs
    (tests/git/test_confine.py shows what a confined git can and cannot open)."""
    _running(control_plane, git_server, operator, "confined")
    assert "git runs in Landlock-confined threads" in operator.log.read_text(errors="replace")
    report_attack(9, "git opening the operator's API token", refused_as="Landlock")


def test_an_ssh_repository_without_pinned_host_keys_is_never_connected_to(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    """Attack 5: with no known_hosts, every connection trusted whatever key the host showed.
    Now the Project says why it does not list, and nothing reaches the host."""
    connections: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        name = "unpinned"
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=project_yaml(
                name=name, url=f"ssh://git@127.0.0.1:{port}/org/app.git", environments=ENVS
            ),
        )

        def refused() -> dict[str, Any] | None:
            with contextlib.suppress(TimeoutError):
                connections.append(server.accept())
            found = condition(get(control_plane, "project", name), "SourceReachable")
            return found if found.get("status") == "False" else None

        reachable = wait_until(
            refused, timeout=30, message=lambda: f"{name} refused\n{operator.tail()}"
        )
        assert reachable["reason"] == "HostKeyUnknown"
        assert "known_hosts" in reachable["message"]
        assert connections == []
    report_attack(5, "ssh without pinned host keys", refused_as="HostKeyUnknown")
