"""What a user's app meets on the real node: pulls, probes, Secrets, rollovers and failures.

Every Environment here runs real pods (containerd, runc, the kubelet), so "Running" is judged by
the kubelet's probes and checked by asking the app itself, through its Service.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from kapsa.controlplane import ControlPlane
from kapsa.errors import ControlPlaneError
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    answer,
    condition,
    get,
    project_yaml,
    serves,
    status_of,
    wait_for_commit,
)
from tests.waiting import wait_until

PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff")


def _apply(
    control_plane: ControlPlane,
    git_server: GitServer,
    name: str,
    *,
    app: dict[str, object],
    files: dict[str, str] | None = None,
    environment: dict[str, object] | None = None,
    registry: str | None = None,
) -> str:
    commit = git_server.create_repo(name, files={**SAMPLE_APP, **(files or {})})
    extra: dict[str, object] = {"app": app}
    manifest = project_yaml(
        name=name,
        url=git_server.url_for(name),
        environments=[{"name": "dev", "branch": "main", "autoSync": True, **(environment or {})}],
        extra_spec=extra,
    )
    if registry is not None:
        manifest = manifest.replace("name: harbor", f"name: {registry}")
    control_plane.kubectl("apply", "-f", "-", input=manifest)
    return commit


def _failed_message(control_plane: ControlPlane, name: str, operator: OperatorProcess) -> str:
    """dev's message once it left Deploying after its deadline."""
    wait_until(
        lambda: status_of(control_plane, "-n", name, "environment", "dev").get("phase") == "Failed",
        timeout=60,
        message=lambda: "dev Failed after its deadline\n" + operator.tail(),
    )
    return str(status_of(control_plane, "-n", name, "environment", "dev")["message"])


def _ready(control_plane: ControlPlane, name: str) -> dict[str, object]:
    return condition(get(control_plane, "-n", name, "environment", "dev"), "Ready")


def test_a_two_replica_rollout_always_answers_and_the_old_pods_go(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    name = "relay"
    first = _apply(
        control_plane,
        git_server,
        name,
        app={"port": 8080, "replicas": 2, "healthPath": "/healthz", "rolloutDeadline": "60s"},
    )
    wait_for_commit(control_plane, name, "dev", first, operator)
    serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {first}\n")

    answers: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def ask() -> None:
        deadline = time.monotonic() + 120  # bounded: the loop ends by itself
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                # A slow answer on a loaded machine is not a gap; no answer at all is.
                said = answer(control_plane, name, "dev", timeout=30)
                answers[said.splitlines()[-1]] += 1
            except ControlPlaneError as error:
                failures.append(str(error))
            time.sleep(0.05)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        second = git_server.commit(name, branch="main", files={"greeting.txt": "Second\n"})
        wait_for_commit(control_plane, name, "dev", second, operator, timeout=90)
    finally:
        stop.set()
        asker.join()

    assert failures == []
    assert answers[f"commit: {first}"] > 0 and answers[f"commit: {second}"] > 0
    image = status_of(control_plane, "-n", name, "environment", "dev")["image"]

    def only_new_pods() -> bool:
        pods = get(control_plane, "-n", name, "pods", "-l", "kapsa.io/environment=dev")
        images = [p["spec"]["containers"][0]["image"] for p in pods["items"]]
        return images == [image, image]

    wait_until(only_new_pods, timeout=60, message="the old ReplicaSet's pods gone")
    serves(control_plane, name, "dev", f"Second\ncommit: {second}\n")


def test_secrets_arrive_as_variables_and_a_late_secret_is_picked_up(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    name = "vault"
    commit = _apply(
        control_plane,
        git_server,
        name,
        app={"port": 8080},
        environment={"secretRefs": [{"name": "app-config"}]},
    )
    wait_until(
        lambda: _ready(control_plane, name).get("reason") == "SecretNotFound",
        timeout=60,
        message=lambda: "dev waiting for its Secret\n" + operator.tail(),
    )
    time.sleep(3)  # waiting a while makes the operator look less often, as it would for a user
    control_plane.kubectl(
        "-n",
        name,
        "create",
        "secret",
        "generic",
        "app-config",
        "--from-literal=DATABASE_URL=postgres://db.internal/app",
        "--from-literal=API_TOKEN=not-for-kapsa-to-see",
    )
    # Nothing else changes: no watch event of Kapsa's own, no resync (30 s here) in time.
    wait_for_commit(control_plane, name, "dev", commit, operator, timeout=20)
    serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {commit}\n")
    names = answer(control_plane, name, "dev", "/env").split()
    assert {"DATABASE_URL", "API_TOKEN", "PORT", "KAPSA_COMMIT"} <= set(names)
    assert "postgres://db.internal/app" not in answer(control_plane, name, "dev", "/env")


def test_an_app_that_exits_at_start_reports_the_kubelets_reason(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    name = "crashloop"
    _apply(
        control_plane,
        git_server,
        name,
        app={"port": 8080, "rolloutDeadline": "20s"},
        files={"serve.sh": "echo starting; exit 3\n"},
    )
    wait_until(
        lambda: _ready(control_plane, name).get("reason") in ("CrashLoopBackOff", "Error"),
        timeout=60,
        message=lambda: f"dev reporting the crash: {_ready(control_plane, name)}",
    )
    assert "exit code 3" in str(_ready(control_plane, name)["message"])
    failed = _failed_message(control_plane, name, operator)
    assert "CrashLoopBackOff" in failed or "Error" in failed
    assert "exit code 3" in failed


def test_a_probe_that_never_passes_is_reported_with_the_probes_words(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    name = "unready"
    _apply(
        control_plane,
        git_server,
        name,
        app={"port": 8080, "healthPath": "/ready", "rolloutDeadline": "15s"},
    )
    wait_until(
        lambda: "statuscode: 404" in str(_ready(control_plane, name).get("message")),
        timeout=60,
        message=lambda: f"dev reporting the probe: {_ready(control_plane, name)}",
    )
    assert _ready(control_plane, name)["reason"] == "Unhealthy"
    assert "Readiness probe failed" in _failed_message(control_plane, name, operator)


def test_an_image_the_node_cannot_pull_is_reported_with_the_pull_error(
    control_plane: ControlPlane,
    git_server: GitServer,
    tls_registry_server: RegistryServer,
    untrusted_registry: str,
    ca_trusting_operator: OperatorProcess,
) -> None:
    operator = ca_trusting_operator
    name = "pullfail"
    _apply(
        control_plane,
        git_server,
        name,
        app={"port": 8080, "rolloutDeadline": "20s"},
        registry=untrusted_registry,
    )
    wait_until(
        lambda: _ready(control_plane, name).get("reason") in PULL_ERRORS,
        timeout=90,
        message=lambda: (
            f"dev reporting the pull: {_ready(control_plane, name)}\n" + operator.tail()
        ),
    )
    message = str(_ready(control_plane, name)["message"])
    assert tls_registry_server.server in message
    failed = _failed_message(control_plane, name, operator)
    assert any(reason in failed for reason in PULL_ERRORS)
