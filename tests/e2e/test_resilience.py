"""Operating properties: crashes, outages, hand edits, leader election, quiet resyncs."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from tests.e2e.conftest import Platform
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    assert_ledger_clean,
    condition,
    get,
    history,
    moves,
    phase_of,
    project_yaml,
    remove_all_projects,
    status_of,
    wait_for_project_phase,
)
from tests.waiting import wait_until

APP = SAMPLE_APP
ENVS = [
    {"name": "dev", "branch": "main", "autoSync": True},
    {"name": "prod", "branch": "main", "autoSync": False},
]


def _apply(
    control_plane: ControlPlane,
    git_server: GitServer,
    name: str,
    environments: list[dict] | None = None,
) -> str:
    commit = git_server.create_repo(name, files=APP)
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name, url=git_server.url_for(name), environments=environments or ENVS
        ),
    )
    return commit


def test_operator_killed_mid_build_and_mid_rollout_converges(
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "crashy"
    platform.kpack.hold.set()
    try:
        _apply(control_plane, git_server, name)
        wait_until(
            lambda: phase_of(control_plane, "project", name) == "Building",
            timeout=30,
            message=lambda: "Building\n" + operator.tail(),
        )
        operator.kill()
        operator.start()
    finally:
        platform.kpack.release()
    wait_for_project_phase(control_plane, name, "Running", operator)
    operator.kill()
    operator.start()
    second = git_server.commit(name, branch="main", files={"app.py": "print(2)\n"})
    wait_until(
        lambda: (
            phase_of(control_plane, "-n", name, "environment", "dev") == "Deploying"
            or status_of(control_plane, "-n", name, "environment", "dev").get("commit") == second
        ),
        timeout=30,
        message=lambda: "dev rolling out\n" + operator.tail(),
    )
    operator.kill()
    operator.start()
    wait_until(
        lambda: (
            status_of(control_plane, "-n", name, "environment", "dev").get("commit") == second
            and phase_of(control_plane, "project", name) == "Running"
        ),
        timeout=60,
        message=lambda: "converged on the second commit\n" + operator.tail(),
    )
    images = get(control_plane, "-n", name, "images.kpack.io")["items"]
    assert [i["metadata"]["name"] for i in images] == [f"{name}-main"]
    assert_ledger_clean(operator_ledger, name)
    assert moves(history(operator_ledger, name), kind="Project", name=name)[:3] == [
        ("Pending", "Building", "build_started"),
        ("Building", "Deploying", "build_succeeded"),
        ("Deploying", "Running", "environments_ready"),
    ]


def test_hand_edits_to_owned_objects_are_put_back_and_recorded(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "drift"
    _apply(control_plane, git_server, name, environments=ENVS[:1])
    wait_for_project_phase(control_plane, name, "Running", operator)
    image = get(control_plane, "-n", name, "environment", "dev")["status"]["image"]

    control_plane.kubectl("-n", name, "set", "image", "deployment/dev", "app=nginx:latest")
    wait_until(
        lambda: (
            get(control_plane, "-n", name, "deployment", "dev")["spec"]["template"]["spec"][
                "containers"
            ][0]["image"]
            == image
        ),
        timeout=30,
        message="image put back",
    )
    control_plane.kubectl("-n", name, "delete", "service", "dev")
    wait_until(
        lambda: get(control_plane, "-n", name, "service", "dev") is not None,
        timeout=30,
        message="Service put back",
    )
    control_plane.kubectl("-n", name, "delete", "ingress", "dev")
    wait_until(
        lambda: get(control_plane, "-n", name, "ingress", "dev") is not None,
        timeout=30,
        message="Ingress put back",
    )
    repairs = [e for e in history(operator_ledger, name) if e.trigger == "drift_repaired"]
    assert {"Deployment", "Service", "Ingress"} <= {
        kind for e in repairs for kind in ("Deployment", "Service", "Ingress") if kind in e.message
    }
    assert phase_of(control_plane, "-n", name, "environment", "dev") == "Running"
    assert_ledger_clean(operator_ledger, name)


def test_git_server_down_then_back_touches_nothing_and_recovers(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "gitdown"
    _apply(control_plane, git_server, name, environments=ENVS[:1])
    wait_for_project_phase(control_plane, name, "Running", operator)
    before = get(control_plane, "-n", name, "deployment", "dev")["metadata"]["resourceVersion"]
    git_server.stop()
    try:
        wait_until(
            lambda: (
                condition(get(control_plane, "project", name), "SourceReachable").get("status")
                == "False"
            ),
            timeout=30,
            message="SourceReachable=False",
        )
        assert (
            get(control_plane, "-n", name, "deployment", "dev")["metadata"]["resourceVersion"]
            == before
        )
        assert phase_of(control_plane, "-n", name, "environment", "dev") == "Running"
    finally:
        git_server.start()
    newer = git_server.commit(name, branch="main", files={"app.py": "print('back')\n"})
    wait_until(
        lambda: status_of(control_plane, "-n", name, "environment", "dev").get("commit") == newer,
        timeout=60,
        message=lambda: "rolled out after the outage\n" + operator.tail(),
    )
    assert condition(get(control_plane, "project", name), "SourceReachable")["status"] == "True"


def test_api_server_restart_is_survived(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "apirestart"
    _apply(control_plane, git_server, name, environments=ENVS[:1])
    wait_for_project_phase(control_plane, name, "Running", operator)
    control_plane.restart_apiserver()
    newer = git_server.commit(name, branch="main", files={"app.py": "print('after')\n"})
    wait_until(
        lambda: status_of(control_plane, "-n", name, "environment", "dev").get("commit") == newer,
        timeout=90,
        message=lambda: "rolled out after the API server restart\n" + operator.tail(),
    )


def test_a_resync_in_which_nothing_changed_writes_nothing(
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator_ledger: str,
    tmp_path: Path,
) -> None:
    name = "quiet"
    process = OperatorProcess(
        control_plane=control_plane,
        ledger_url=operator_ledger,
        workdir=tmp_path,
        extra=["--no-leader-elect", "--resync", "1s"],
    ).start()
    try:
        _apply(control_plane, git_server, name)
        wait_for_project_phase(control_plane, name, "Running", process)
        wait_until(
            lambda: (
                get(control_plane, "-n", name, "environment", "prod")["status"].get("phase")
                == "Running"
            ),
            timeout=30,
            message="prod Running",
        )

        def versions() -> dict[str, str]:
            found = {}
            for kind in (
                "environments",
                "deployments",
                "services",
                "ingresses",
                "images.kpack.io",
                "serviceaccounts",
                "secrets",
            ):
                for item in get(control_plane, "-n", name, kind)["items"]:
                    found[f"{kind}/{item['metadata']['name']}"] = item["metadata"][
                        "resourceVersion"
                    ]
            found["project"] = get(control_plane, "project", name)["metadata"]["resourceVersion"]
            return found

        rows = len(history(operator_ledger, name))
        settled = versions()
        resyncs = process.log.read_text().count("Operator.resync")
        wait_until(
            lambda: process.log.read_text().count("Operator.resync") >= resyncs + 3,
            timeout=30,
            message="three resyncs",
        )
        assert versions() == settled
        assert len(history(operator_ledger, name)) == rows
    finally:
        remove_all_projects(control_plane, process)
        process.stop()


def test_two_replicas_one_leader_and_a_takeover(
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator_ledger: str,
    tmp_path: Path,
) -> None:
    name = "leader"
    replicas = []
    for index in range(2):
        workdir = tmp_path / f"replica-{index}"
        workdir.mkdir()
        replicas.append(
            OperatorProcess(
                control_plane=control_plane,
                ledger_url=operator_ledger,
                workdir=workdir,
                extra=["--identity", f"replica-{index}"],
            ).start()
        )
    try:
        ours = {"replica-0", "replica-1"}
        # A Lease left by an earlier operator expires first; then one of these two takes it.
        lease = wait_until(
            lambda: (
                (get(control_plane, "-n", "kapsa-system", "lease", "kapsa-operator") or {})
                .get("spec", {})
                .get("holderIdentity")
                in ours
                and get(control_plane, "-n", "kapsa-system", "lease", "kapsa-operator")["spec"][
                    "holderIdentity"
                ]
            ),
            timeout=60,
            message="a leader among the two replicas",
        )
        leader = replicas[int(lease.split("-")[1])]
        standby = replicas[1 - int(lease.split("-")[1])]
        _apply(control_plane, git_server, name, environments=ENVS[:1])
        wait_for_project_phase(control_plane, name, "Running", leader)
        assert "Project leader:" in leader.log.read_text()
        assert "Project leader:" not in standby.log.read_text()

        leader.kill()
        wait_until(
            lambda: (
                get(control_plane, "-n", "kapsa-system", "lease", "kapsa-operator")["spec"][
                    "holderIdentity"
                ]
                != lease
            ),
            timeout=30,
            message="the standby takes the lease",
        )
        newer = git_server.commit(name, branch="main", files={"app.py": "print('ha')\n"})
        wait_until(
            lambda: (
                status_of(control_plane, "-n", name, "environment", "dev").get("commit") == newer
            ),
            timeout=60,
            message=lambda: "the new leader rolls out\n" + standby.tail(),
        )
        assert_ledger_clean(operator_ledger, name)
    finally:
        alive = [r for r in replicas if r.process and r.process.poll() is None]
        remove_all_projects(control_plane, alive[0])
        for replica in replicas:
            replica.stop()


def test_secrets_are_referenced_and_a_missing_one_holds_the_rollout(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "secretive"
    environments = [
        {
            "name": "prod",
            "branch": "main",
            "autoSync": True,
            "secretRefs": [{"name": "api-secrets-prod"}],
        }
    ]
    _apply(control_plane, git_server, name, environments=environments)
    held = wait_until(
        lambda: (
            condition(get(control_plane, "-n", name, "environment", "prod"), "Progressing").get(
                "reason"
            )
            == "SecretNotFound"
            and get(control_plane, "-n", name, "environment", "prod")
        ),
        timeout=60,
        message=lambda: "SecretNotFound\n" + operator.tail(),
    )
    assert "api-secrets-prod" in condition(held, "Progressing")["message"]
    assert held["status"]["phase"] == "Pending"
    assert get(control_plane, "-n", name, "deployment", "prod") is None

    # As External Secrets Operator would: the Secret appears, the rollout goes on by itself.
    control_plane.kubectl(
        "-n",
        name,
        "create",
        "secret",
        "generic",
        "api-secrets-prod",
        "--from-literal=DATABASE_PASSWORD=s3cr3t-value",
    )
    wait_until(
        lambda: phase_of(control_plane, "-n", name, "environment", "prod") == "Running",
        timeout=60,
        message=lambda: "prod Running\n" + operator.tail(),
    )
    container = get(control_plane, "-n", name, "deployment", "prod")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["envFrom"] == [{"secretRef": {"name": "api-secrets-prod"}}]
    for text in (
        json.dumps(get(control_plane, "project", name)),
        json.dumps(get(control_plane, "-n", name, "environment", "prod")),
        json.dumps([e.to_dict() for e in history(operator_ledger, name)]),
        operator.log.read_text(),
    ):
        assert "s3cr3t-value" not in text
        assert base64.b64encode(b"s3cr3t-value").decode() not in text


def test_a_namespace_kapsa_does_not_own_is_never_taken_over(
    control_plane: ControlPlane,
    git_server: GitServer,
    operator: OperatorProcess,
) -> None:
    name = "taken"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("-n", name, "create", "configmap", "someone-elses", "--from-literal=a=b")
    _apply(control_plane, git_server, name, environments=ENVS[:1])
    ready = wait_until(
        lambda: (
            condition(get(control_plane, "project", name), "Ready").get("reason")
            == "NamespaceConflict"
            and condition(get(control_plane, "project", name), "Ready")
        ),
        timeout=30,
        message=lambda: "NamespaceConflict\n" + operator.tail(),
    )
    assert "not take it over" in ready["message"]
    namespace = get(control_plane, "namespace", name)
    assert not namespace["metadata"].get("ownerReferences")
    assert Counter(i["kind"] for i in get(control_plane, "-n", name, "all")["items"]) == Counter()
    assert get(control_plane, "-n", name, "environments")["items"] == []
    control_plane.kubectl("delete", "namespace", name, "--wait=false")
