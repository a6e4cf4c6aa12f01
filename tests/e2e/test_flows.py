"""Flows 1, 2 and 7 of the design, step by step, as a developer drives them with kubectl."""

from __future__ import annotations

import base64

from kapsa.controlplane import ControlPlane
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
    phase_of,
    project_yaml,
    serves,
    status_of,
)
from tests.waiting import wait_until

APP = SAMPLE_APP


def _deploy(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess, name: str
) -> str:
    commit = git_server.create_repo(name, files=APP)
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[
                {"name": "dev", "branch": "main", "autoSync": True},
                {"name": "prod", "branch": "main", "autoSync": False},
            ],
        ),
    )
    wait_until(
        lambda: phase_of(control_plane, "project", name) == "Running",
        timeout=60,
        message=lambda: f"Project {name} Running\n{operator.tail()}",
    )
    return commit


def test_first_deployment_creates_everything_the_diagram_shows(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "shop"
    commit = _deploy(control_plane, git_server, operator, name)
    project = get(control_plane, "project", name)
    status = project["status"]
    assert status["latestCommit"] == commit
    assert status["namespace"] == name
    assert condition(project, "Ready")["status"] == "True"
    assert condition(project, "BuildSucceeded")["status"] == "True"
    assert condition(project, "SourceReachable")["status"] == "True"
    assert [(e["name"], e["phase"], e["url"]) for e in status["environments"]] == [
        ("dev", "Running", f"https://dev.{name}.apps.corp.com"),
        ("prod", "Running", f"https://prod.{name}.apps.corp.com"),
    ]

    namespace = get(control_plane, "namespace", name)
    assert namespace["metadata"]["ownerReferences"][0]["uid"] == project["metadata"]["uid"]
    account = get(control_plane, "-n", name, "serviceaccount", "kapsa-builder")
    assert {"name": "kapsa-registry"} in account["secrets"]
    pushed = get(control_plane, "-n", name, "secret", "kapsa-registry")
    config = base64.b64decode(pushed["data"][".dockerconfigjson"]).decode()
    assert registry_server.server in config
    # The apps' own identity: a pull secret for the kubelet, no push credentials, no API token.
    app_account = get(control_plane, "-n", name, "serviceaccount", "kapsa-app")
    assert app_account["imagePullSecrets"] == [{"name": "kapsa-registry-pull"}]
    assert app_account["automountServiceAccountToken"] is False
    pull = get(control_plane, "-n", name, "secret", "kapsa-registry-pull")
    assert pull["type"] == "kubernetes.io/dockerconfigjson"
    assert "kpack.io/docker" not in (pull["metadata"].get("annotations") or {})

    image = get(control_plane, "-n", name, "image.kpack.io", f"{name}-main")
    assert image["spec"]["source"]["git"] == {"url": git_server.url_for(name), "revision": commit}
    assert image["spec"]["additionalTags"] == [f"{registry_server.server}/apps/{name}:{commit[:7]}"]
    assert image["spec"]["serviceAccountName"] == "kapsa-builder"
    built = image["status"]["latestImage"]
    assert built.startswith(f"{registry_server.server}/apps/{name}@sha256:")
    assert status["latestImage"] == built
    assert registry_server.has_manifest(f"apps/{name}", built.split("@")[1])

    for env in ("dev", "prod"):
        environment = get(control_plane, "-n", name, "environment", env)
        assert environment["metadata"]["labels"]["kapsa.io/type"] == "standard"
        assert environment["metadata"]["ownerReferences"][0]["kind"] == "Project"
        assert environment["status"]["phase"] == "Running"
        assert environment["status"]["image"] == built
        assert environment["status"]["commit"] == commit
        assert environment["status"]["url"] == f"https://{env}.{name}.apps.corp.com"
        deployment = get(control_plane, "-n", name, "deployment", env)
        pod_spec = deployment["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        assert container["image"] == built
        assert container["ports"][0]["containerPort"] == 8080
        assert pod_spec["serviceAccountName"] == "kapsa-app"
        assert pod_spec["automountServiceAccountToken"] is False
        assert pod_spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["resources"] == {
            "requests": {"cpu": "25m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
        # The app really runs: pulled with the pull secret, ready by the kubelet's probe, and
        # reached through its Service, answering with the commit it was built from.
        serves(control_plane, name, env, f"Hello from Kapsa\ncommit: {commit}\n")
        pods = get(control_plane, "-n", name, "pods", "-l", f"kapsa.io/environment={env}")
        assert [p["status"]["phase"] for p in pods["items"]] == ["Running"]
        assert not any(v.get("secret") for v in pods["items"][0]["spec"].get("volumes", []))
        assert deployment["metadata"]["ownerReferences"][0]["uid"] == environment["metadata"]["uid"]
        service = get(control_plane, "-n", name, "service", env)
        assert service["spec"]["ports"][0]["targetPort"] == 8080
        ingress = get(control_plane, "-n", name, "ingress", env)
        host = f"{env}.{name}.apps.corp.com"
        assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": f"{env}-tls"}]
        assert ingress["spec"]["rules"][0]["host"] == host
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert (
            ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
            == "letsencrypt-prod"
        )

    rows = history(operator_ledger, name)
    assert moves(rows, kind="Project", name=name) == [
        ("Pending", "Building", "build_started"),
        ("Building", "Deploying", "build_succeeded"),
        ("Deploying", "Running", "environments_ready"),
    ]
    assert moves(rows, kind="Environment", name="dev") == [
        ("Pending", "Deploying", "rollout_started"),
        ("Deploying", "Running", "rollout_ready"),
    ]
    assert [e.seq for e in rows if e.name == "dev"] == [1, 2]


def test_new_commit_rolls_out_to_auto_sync_environments_only(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "blog"
    first = _deploy(control_plane, git_server, operator, name)
    prod_image = get(control_plane, "-n", name, "environment", "prod")["status"]["image"]

    second = git_server.commit(name, branch="main", files={"greeting.txt": "Hello again\n"})
    wait_until(
        lambda: (
            status_of(control_plane, "-n", name, "environment", "dev").get("commit") == second
            and phase_of(control_plane, "-n", name, "environment", "dev") == "Running"
        ),
        timeout=60,
        message=lambda: "dev on the new commit\n" + operator.tail(),
    )
    wait_until(
        lambda: get(control_plane, "project", name)["status"]["latestCommit"] == second,
        timeout=30,
        message="latestCommit moved",
    )
    dev = get(control_plane, "-n", name, "environment", "dev")
    prod = get(control_plane, "-n", name, "environment", "prod")
    assert dev["status"]["image"] != prod_image
    assert prod["status"]["image"] == prod_image
    assert prod["status"]["commit"] == first
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == dev["status"]["image"]
    )
    assert deployment["spec"]["template"]["metadata"]["annotations"]["kapsa.io/commit"] == second
    serves(control_plane, name, "dev", f"Hello again\ncommit: {second}\n")
    serves(control_plane, name, "prod", f"Hello from Kapsa\ncommit: {first}\n")
    rows = history(operator_ledger, name)
    assert moves(rows, kind="Environment", name="dev")[-2:] == [
        ("Running", "Deploying", "rollout_started"),
        ("Deploying", "Running", "rollout_ready"),
    ]
    assert [e.commit for e in rows if e.name == "dev"][-1] == second


def test_failed_build_keeps_every_environment_on_its_last_good_image(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    build_policy: CommitMessageFailPolicy,
    operator_ledger: str,
) -> None:
    name = "wiki"
    _deploy(control_plane, git_server, operator, name)
    good = get(control_plane, "-n", name, "environment", "dev")["status"]["image"]

    bad = git_server.commit(
        name,
        branch="main",
        files={"app.py": "syntax error(\n"},
        message=f"{build_policy.MARKER} npm install failed: exit status 1",
    )
    wait_until(
        lambda: phase_of(control_plane, "project", name) == "Failed",
        timeout=60,
        message=lambda: "Project Failed\n" + operator.tail(),
    )
    project = get(control_plane, "project", name)
    built = condition(project, "BuildSucceeded")
    assert built["status"] == "False"
    assert built["reason"] == "BuildFailed"
    assert "npm install failed" in built["message"]
    for env in ("dev", "prod"):
        environment = get(control_plane, "-n", name, "environment", env)
        assert environment["status"]["phase"] == "Running"
        assert environment["status"]["image"] == good
        deployment = get(control_plane, "-n", name, "deployment", env)
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == good
    assert moves(history(operator_ledger, name), kind="Project", name=name)[-2:] == [
        ("Running", "Building", "build_started"),
        ("Building", "Failed", "build_failed"),
    ]
    failed_row = [e for e in history(operator_ledger, name) if e.trigger == "build_failed"][-1]
    assert failed_row.commit == bad
    assert "npm install failed" in failed_row.message

    fixed = git_server.commit(name, branch="main", files={"greeting.txt": "Fixed\n"})
    wait_until(
        lambda: (
            status_of(control_plane, "-n", name, "environment", "dev").get("commit") == fixed
            and phase_of(control_plane, "project", name) == "Running"
        ),
        timeout=60,
        message=lambda: "recovered on the next commit\n" + operator.tail(),
    )
    serves(control_plane, name, "dev", f"Fixed\ncommit: {fixed}\n")
    assert moves(history(operator_ledger, name), kind="Project", name=name)[-3:] == [
        ("Failed", "Building", "build_started"),
        ("Building", "Deploying", "build_succeeded"),
        ("Deploying", "Running", "environments_ready"),
    ]
