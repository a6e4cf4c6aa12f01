"""Outages of what a running Project depends on: the serving environments ride them out.

A DomainPool whose ClusterIssuer disappears cannot give new rollouts certificates, so Kapsa holds
new rollouts back and says why, while what runs keeps running untouched; a Project whose source
URL is edited into one Kapsa refuses says so and leaves its environments alone. Both heal by
themselves once the cause is put right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.harness import (
    CLUSTER_ISSUER,
    DOMAIN_POOL,
    SAMPLE_APP,
    OperatorProcess,
    assert_ledger_clean,
    condition,
    get,
    history,
    moves,
    phase_of,
    project_yaml,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)
from tests.waiting import wait_until

APP = SAMPLE_APP
ENVS = [
    {"name": "dev", "branch": "main", "autoSync": True},
    {"name": "prod", "branch": "main", "autoSync": False},
]
#: Server-set fields that a re-created object gets anew.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")


def _apply(
    control_plane: ControlPlane,
    git_server: GitServer,
    name: str,
    environments: list[dict[str, Any]],
) -> str:
    commit = git_server.create_repo(name, files=APP)
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(name=name, url=git_server.url_for(name), environments=environments),
    )
    return commit


def _environment_reconciles(operator: OperatorProcess) -> float:
    scraped = requests.get(f"{operator.internal_url()}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "kapsa_reconcile_total" and sample.labels.get("kind") == "Environment"
    )


def _operator_looked_again(
    control_plane: ControlPlane, operator: OperatorProcess, name: str, environment: str
) -> None:
    """Until the operator has reconciled `environment` afresh, twice, after everything so far.

    A user's annotation is an event for the Environment; the second reconcile it triggers
    begins after this call started, so it decides on everything the caches hold by then.
    """
    for round_ in (1, 2):
        before = _environment_reconciles(operator)
        control_plane.kubectl(
            "-n", name, "annotate", "--overwrite", "environment", environment, f"note={round_}"
        )

        def reconciled(before: float = before) -> bool:
            return _environment_reconciles(operator) > before

        wait_until(
            reconciled,
            timeout=30,
            message=lambda: f"another reconcile of {environment}\n{operator.tail()}",
        )


def _resource_version(control_plane: ControlPlane, name: str, kind: str, obj: str) -> str:
    return str(get(control_plane, "-n", name, kind, obj)["metadata"]["resourceVersion"])


def _pool_ready(control_plane: ControlPlane) -> dict[str, Any]:
    return condition(get(control_plane, "domainpool", DOMAIN_POOL), "Ready")


def test_a_deleted_cluster_issuer_holds_new_rollouts_back_and_its_return_lets_them_through(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "noissuer"
    first = _apply(control_plane, git_server, name, ENVS[:1])
    wait_for_project_phase(control_plane, name, "Running", operator)
    wait_for_commit(control_plane, name, "dev", first, operator)
    assert _pool_ready(control_plane)["status"] == "True"
    serving = status_of(control_plane, "-n", name, "environment", "dev")["image"]
    deployment_version = _resource_version(control_plane, name, "deployment", "dev")
    env_moves = moves(history(operator_ledger, name), kind="Environment", name="dev")

    issuer = json.loads(
        control_plane.kubectl("get", "clusterissuer", CLUSTER_ISSUER, "-o", "json").stdout
    )
    for field in SERVER_FIELDS:
        issuer["metadata"].pop(field, None)
    issuer.pop("status", None)

    control_plane.kubectl("delete", "clusterissuer", CLUSTER_ISSUER)
    try:
        wait_until(
            lambda: _pool_ready(control_plane).get("status") == "False",
            timeout=30,
            message=lambda: f"DomainPool {DOMAIN_POOL} not Ready\n{operator.tail()}",
        )
        ready = _pool_ready(control_plane)
        assert ready["reason"] == "IssuerNotFound"
        assert CLUSTER_ISSUER in ready["message"]

        second = git_server.commit(name, branch="main", files={"app.py": "print(2)\n"})
        # The build goes ahead: only the rollout waits for the pool.
        wait_until(
            lambda: any(
                b.get("builtCommit") == second
                for b in status_of(control_plane, "project", name).get("branches", [])
            ),
            timeout=60,
            message=lambda: f"{second[:7]} built\n{operator.tail()}",
        )
        _operator_looked_again(control_plane, operator, name, "dev")

        env = get(control_plane, "-n", name, "environment", "dev")
        assert env["status"]["phase"] == "Running"
        assert env["status"]["commit"] == first
        assert env["status"]["image"] == serving
        assert "targetImage" not in env["status"]
        progressing = condition(env, "Progressing")
        assert (progressing["status"], progressing["reason"]) == ("False", "DomainPoolNotReady")
        assert DOMAIN_POOL in progressing["message"]
        assert condition(env, "Ready")["status"] == "True"
        assert _resource_version(control_plane, name, "deployment", "dev") == deployment_version
        assert moves(history(operator_ledger, name), kind="Environment", name="dev") == env_moves
    finally:
        if get(control_plane, "clusterissuer", CLUSTER_ISSUER) is None:
            control_plane.kubectl("create", "-f", "-", input=json.dumps(issuer))

    wait_until(
        lambda: _pool_ready(control_plane).get("status") == "True",
        timeout=30,
        message=lambda: f"DomainPool {DOMAIN_POOL} Ready again\n{operator.tail()}",
    )
    assert _pool_ready(control_plane)["reason"] == "IssuerReady"
    wait_for_commit(control_plane, name, "dev", second, operator)
    env = get(control_plane, "-n", name, "environment", "dev")
    assert env["status"]["image"] != serving
    assert condition(env, "Progressing")["reason"] != "DomainPoolNotReady"
    container = get(control_plane, "-n", name, "deployment", "dev")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == env["status"]["image"]
    wait_for_project_phase(control_plane, name, "Running", operator)
    assert moves(history(operator_ledger, name), kind="Environment", name="dev")[
        len(env_moves) :
    ] == [
        ("Running", "Deploying", "rollout_started"),
        ("Deploying", "Running", "rollout_ready"),
    ]
    assert_ledger_clean(operator_ledger, name)


def test_a_source_url_edited_into_a_refused_one_stops_the_project_not_its_environments(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
    tmp_path: Path,
) -> None:
    name = "badurl"
    good_url = git_server.url_for(name)
    first = _apply(control_plane, git_server, name, ENVS)
    wait_for_project_phase(control_plane, name, "Running", operator)
    for environment in ("dev", "prod"):
        wait_for_commit(control_plane, name, environment, first, operator)
    versions = {
        environment: _resource_version(control_plane, name, "deployment", environment)
        for environment in ("dev", "prod")
    }
    rows = len(history(operator_ledger, name))

    planted = tmp_path / "pwned"
    refused = f"ext::sh -c touch% {planted}"
    control_plane.kubectl(
        "patch",
        "project",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"git": {"url": refused}}}}),
    )
    generation = get(control_plane, "project", name)["metadata"]["generation"]

    def refused_for_this_generation() -> bool:
        project = get(control_plane, "project", name)
        return bool(
            project["status"].get("observedGeneration") == generation
            and condition(project, "Ready").get("status") == "False"
        )

    wait_until(
        refused_for_this_generation,
        timeout=30,
        message=lambda: f"Project {name} Ready=False\n{operator.tail()}",
    )
    ready = condition(get(control_plane, "project", name), "Ready")
    assert ready["reason"] == "InvalidSource"
    assert "refused" in ready["message"]
    for environment in ("dev", "prod"):
        _operator_looked_again(control_plane, operator, name, environment)
        assert phase_of(control_plane, "-n", name, "environment", environment) == "Running"
        assert status_of(control_plane, "-n", name, "environment", environment)["commit"] == first
        assert (
            _resource_version(control_plane, name, "deployment", environment)
            == versions[environment]
        )
    assert len(history(operator_ledger, name)) == rows
    assert not planted.exists()

    control_plane.kubectl(
        "patch",
        "project",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"git": {"url": good_url}}}}),
    )
    wait_until(
        lambda: condition(get(control_plane, "project", name), "Ready").get("status") == "True",
        timeout=30,
        message=lambda: f"Project {name} Ready again\n{operator.tail()}",
    )
    assert phase_of(control_plane, "project", name) == "Running"
    for environment in ("dev", "prod"):
        assert (
            _resource_version(control_plane, name, "deployment", environment)
            == versions[environment]
        )
    assert len(history(operator_ledger, name)) == rows
    assert not planted.exists()
