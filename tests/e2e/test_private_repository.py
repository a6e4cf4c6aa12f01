"""A Project on a private repository: its password in a basic-auth Secret, never anywhere else.

The repository sits behind a real smart-HTTP git host that wants HTTP Basic auth; the user keeps
the username and password in a `kubernetes.io/basic-auth` Secret in kapsa-system, shared with the
Project and bound to the git host by annotations, and names it in `spec.source.git.secretRef`, as
the docs tell them to.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.githttp import GitHttpServer
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    condition,
    get,
    history,
    project_yaml,
    share_git_secret,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)
from tests.waiting import wait_until

NAMESPACE = "kapsa-system"
USERNAME = "kapsa-deploy"
APP = SAMPLE_APP


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


@pytest.fixture
def git_http(git_server: GitServer, password: str) -> Iterator[GitHttpServer]:
    with GitHttpServer(
        repos_dir=git_server.repos_dir, username=USERNAME, password=password
    ) as server:
        yield server


def _leaks(text: str, *passwords: str) -> list[str]:
    """Which of `passwords` appear in `text`, as they are or base64-encoded."""
    found = []
    for value in passwords:
        encoded = base64.b64encode(value.encode()).decode()
        if value in text or encoded in text:
            found.append(value)
    return found


def test_a_private_repository_deploys_and_a_wrong_password_only_stops_the_polls(
    git_http: GitHttpServer,
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    password: str,
) -> None:
    name = "private-shop"
    secret = f"{name}-git"
    commit = git_server.create_repo(name, files=APP)
    url = git_http.url_for(name)
    # kapsa-system is not the Project's namespace: the Secret's owner shares it, for this host.
    share_git_secret(
        control_plane,
        secret=secret,
        project=name,
        username=USERNAME,
        password=password,
        more={"tls.key": "not-for-git"},
    )
    try:
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=project_yaml(
                name=name,
                url=url,
                environments=[{"name": "dev", "branch": "main", "autoSync": True}],
                extra_spec={
                    "source": {
                        "git": {"url": url, "secretRef": {"name": secret, "namespace": NAMESPACE}},
                        "pollInterval": "1s",
                    }
                },
            ),
        )
        wait_for_project_phase(control_plane, name, "Running", operator)
        wait_for_commit(control_plane, name, "dev", commit, operator)

        project = get(control_plane, "project", name)
        assert project["status"]["latestCommit"] == commit
        assert condition(project, "SourceReachable")["status"] == "True"
        # The operator read the branches from this host, with the password: challenged, then let in.
        seen = [status for _, path, status in git_http.requests() if path.startswith(f"/{name}.")]
        assert 401 in seen
        assert 200 in seen
        # Builds clone with a copy of the credentials in the Project's namespace, found by
        # kpack through its annotation and the builder ServiceAccount.
        copied = get(control_plane, "-n", name, "secret", "kapsa-git")
        assert (
            copied["metadata"]["annotations"]["kpack.io/git"]
            == git_http.url_for(name).rsplit("/", 1)[0]
        )
        # Copied key by key: what git needs, nothing else the Secret holds.
        assert sorted(copied["data"]) == ["password", "username"]
        assert copied["type"] == "kubernetes.io/basic-auth"
        builder = get(control_plane, "-n", name, "serviceaccount", "kapsa-builder")
        assert {"name": "kapsa-git"} in builder["secrets"]
        dev = get(control_plane, "-n", name, "environment", "dev")
        image = dev["status"]["image"]
        assert image

        assert not _leaks(json.dumps(project), password)
        assert not _leaks(json.dumps(get(control_plane, "-n", name, "environments")), password)
        rows = history(operator_ledger, name)
        assert rows
        assert not _leaks(json.dumps([row.to_dict() for row in rows], default=str), password)
        assert not _leaks(operator.log.read_text("utf-8", "replace"), password)

        wrong = "wrong-" + secrets.token_urlsafe(18)
        control_plane.kubectl(
            "-n",
            NAMESPACE,
            "patch",
            "secret",
            secret,
            "--type=merge",
            "-p",
            json.dumps({"stringData": {"password": wrong}}),
        )

        unreachable = wait_until(
            lambda: (
                (found := condition(get(control_plane, "project", name), "SourceReachable"))
                and found["status"] == "False"
                and found
            ),
            timeout=30,
            message=lambda: f"SourceReachable False on {name}\n{operator.tail()}",
        )
        assert unreachable["reason"] == "SourceUnreachable"
        assert "Authentication failed" in unreachable["message"]
        assert not _leaks(unreachable["message"], password, wrong)

        dev = get(control_plane, "-n", name, "environment", "dev")
        assert dev["status"]["phase"] == "Running"
        assert dev["status"]["image"] == image
        assert dev["status"]["commit"] == commit
        deployment = get(control_plane, "-n", name, "deployment", "dev")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
        assert status_of(control_plane, "project", name)["latestCommit"] == commit

        assert not _leaks(json.dumps(get(control_plane, "project", name)), password, wrong)
        rows = history(operator_ledger, name)
        assert not _leaks(json.dumps([row.to_dict() for row in rows], default=str), password, wrong)
        assert not _leaks(operator.log.read_text("utf-8", "replace"), password, wrong)
    finally:
        control_plane.kubectl("-n", NAMESPACE, "delete", "secret", secret, check=False)
