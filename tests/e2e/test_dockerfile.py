"""Dockerfile builds, for real: buildah in a Job pod on the node, pushing to the login registry.

The builder image is assembled from this machine's Debian buildah and git (kapsa.controlplane
.buildah) and pulled by the node from the registry like any image; the Dockerfiles build FROM a
busybox image in the same registry. Nothing here is simulated: the Job controller starts the pod,
buildah clones, builds (RUN steps included) and pushes, and the environment runs the digest the
build reported in its termination message.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from kapsa.controlplane import ControlPlane
from kapsa.controlplane.images import Image, busybox_userland
from kapsa.sandbox.githttp import GitHttpServer
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.stack import KAPSA
from tests.e2e.conftest import Platform
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    condition,
    get,
    history,
    moves,
    project_yaml,
    serves,
    share_git_secret,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)
from tests.waiting import wait_until

#: Builds run on two shared cores: a first build pulls its base and writes every layer.
BUILD = 180


def _dockerfile(base: str, *, user: bool = True, run: str = "echo built > built.txt") -> str:
    lines = [f"FROM {base}", "COPY . /workspace", "WORKDIR /workspace", f"RUN {run}"]
    lines += ["USER 1000"] if user else []
    return "\n".join([*lines, "CMD sh serve.sh", ""])


def _apply(
    control_plane: ControlPlane,
    git_server: GitServer,
    name: str,
    *,
    dockerfile: str,
    url: str | None = None,
    extra_spec: dict[str, object] | None = None,
) -> str:
    commit = git_server.create_repo(name, files={**SAMPLE_APP, "Dockerfile": dockerfile})
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=url or git_server.url_for(name),
            environments=[{"name": "dev", "branch": "main"}],
            extra_spec=extra_spec,
        ),
    )
    return commit


def _kapsa(control_plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KAPSA, *args, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _build_pod(control_plane: ControlPlane, namespace: str, job: dict) -> dict:
    uid = job["metadata"]["uid"]
    [pod] = get(control_plane, "-n", namespace, "pods", "-l", f"controller-uid={uid}")["items"]
    return pod


def test_buildah_builds_the_commit_in_a_job_and_the_environment_runs_the_digest_it_pushed(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    platform: Platform,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "docked"
    commit = _apply(control_plane, git_server, name, dockerfile=_dockerfile(platform.images.base))
    wait_for_project_phase(control_plane, name, "Running", operator, timeout=BUILD)

    [job] = get(control_plane, "-n", name, "jobs")["items"]
    assert job["metadata"]["name"] == f"{name}-main-{commit[:7]}"
    assert condition(job, "Complete")["status"] == "True"  # the real Job controller's word
    spec = job["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == platform.images.builder
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KAPSA_GIT_URL"] == git_server.url_for(name)
    assert env["KAPSA_COMMIT"] == commit
    tag = f"{registry_server.server}/apps/{name}:{commit[:7]}"
    assert env["KAPSA_IMAGE"] == tag
    assert (env["KAPSA_DOCKERFILE"], env["KAPSA_CONTEXT"]) == ("Dockerfile", ".")
    # No privileged mode, no API token: the capabilities chroot isolation needs, nothing more.
    assert "privileged" not in container["securityContext"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "kapsa-builder"
    assert get(control_plane, "-n", name, "images.kpack.io")["items"] == []

    # The digest is the one buildah reported for its push, and the registry holds it.
    reported = _build_pod(control_plane, name, job)["status"]["containerStatuses"][0]
    digest = reported["state"]["terminated"]["message"].strip()
    assert digest == registry_server.digest_of(f"apps/{name}", commit[:7])
    image = f"{registry_server.server}/apps/{name}@{digest}"
    assert status_of(control_plane, "-n", name, "environment", "dev")["image"] == image
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {commit}\n")
    # The RUN step ran inside the image being built.
    logs = control_plane.kubectl("-n", name, "logs", f"job/{job['metadata']['name']}").stdout
    assert "STEP 4/6: RUN echo built > built.txt" in logs

    newer = git_server.commit(name, branch="main", files={"greeting.txt": "v2\n"})
    wait_for_commit(control_plane, name, "dev", newer, operator, timeout=BUILD)
    serves(control_plane, name, "dev", f"v2\ncommit: {newer}\n")
    assert len(get(control_plane, "-n", name, "jobs")["items"]) == 2
    assert moves(history(operator_ledger, name), kind="Environment", name="dev")[-1] == (
        "Deploying",
        "Running",
        "rollout_ready",
    )


def test_a_failing_run_step_keeps_the_last_good_image_and_names_the_step(
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator: OperatorProcess,
) -> None:
    name = "stepfail"
    base = platform.images.base
    good = _apply(control_plane, git_server, name, dockerfile=_dockerfile(base))
    wait_for_commit(control_plane, name, "dev", good, operator, timeout=BUILD)
    image = status_of(control_plane, "-n", name, "environment", "dev")["image"]

    broken = _dockerfile(base, run="echo compiling the assets && exit 3")
    git_server.commit(name, branch="main", files={"Dockerfile": broken})
    failed = wait_until(
        lambda: (
            (c := condition(get(control_plane, "project", name), "BuildSucceeded"))
            and c["status"] == "False"
            and c
        ),
        timeout=BUILD,
        message=lambda: f"BuildSucceeded=False\n{operator.tail()}",
    )
    assert failed["reason"] == "BuildFailed"
    assert "build step 4/6 (RUN echo compiling the assets && exit 3) failed" in failed["message"]
    assert "compiling the assets" in failed["message"].split("failed:", 1)[1]  # the log's tail
    # Flow 7: the environment stays on its last good image, and keeps answering.
    dev = status_of(control_plane, "-n", name, "environment", "dev")
    assert dev["image"] == image
    assert dev["phase"] == "Running"
    serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {good}\n")

    # The whole log, while the Job's pod is kept: the newest build, or one commit's.
    newest = _kapsa(control_plane, "logs", name, "--build")
    assert newest.returncode == 0, newest.stderr
    assert "STEP 4/6: RUN echo compiling the assets && exit 3" in newest.stdout
    assert "STEP 1/6: FROM" in newest.stdout  # from the start, not the tail
    first = _kapsa(control_plane, "logs", name, good[:8], "--build")
    assert first.returncode == 0, first.stderr
    assert "Successfully tagged" in first.stdout
    missing = _kapsa(control_plane, "logs", name, "0000000", "--build")
    assert missing.returncode == 1
    assert "no Dockerfile build of commit 0000000" in missing.stderr


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


@pytest.fixture
def git_http(
    control_plane: ControlPlane, git_server: GitServer, password: str
) -> Iterator[GitHttpServer]:
    with GitHttpServer(
        repos_dir=git_server.repos_dir, username="kapsa-deploy", password=password
    ) as server:
        assert control_plane.node is not None and server.port is not None
        control_plane.node.expose(server.port)
        yield server


def test_a_private_repository_over_authenticated_http_builds_with_the_copied_credentials(
    control_plane: ControlPlane,
    git_server: GitServer,
    git_http: GitHttpServer,
    password: str,
    platform: Platform,
    operator: OperatorProcess,
) -> None:
    name = "private-docked"
    secret = f"{name}-git"
    share_git_secret(
        control_plane, secret=secret, project=name, username=git_http.username, password=password
    )
    url = git_http.url_for(name)
    try:
        commit = _apply(
            control_plane,
            git_server,
            name,
            dockerfile=_dockerfile(platform.images.base),
            url=url,
            extra_spec={
                "source": {
                    "git": {"url": url, "secretRef": {"name": secret, "namespace": "kapsa-system"}},
                    "pollInterval": "1s",
                }
            },
        )
        wait_for_commit(control_plane, name, "dev", commit, operator, timeout=BUILD)
        # The image holds the repository's files: the build pod fetched the commit itself, and
        # this server lets nothing through without the password.
        serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {commit}\n")
    finally:
        control_plane.kubectl("-n", "kapsa-system", "delete", "secret", secret, check=False)


def test_a_build_pushes_to_a_registry_with_a_private_ca_the_operator_was_given(
    control_plane: ControlPlane,
    git_server: GitServer,
    tls_registry_server: RegistryServer,
    untrusted_registry: str,
    ca_trusting_operator: OperatorProcess,
) -> None:
    """--registry-ca-bundle reaches the build too: buildah pulls FROM and pushes over TLS it
    verifies against that CA (the node does not trust it, so the app's pods cannot pull)."""
    tls, operator = tls_registry_server, ca_trusting_operator
    base = Image.build(layers=[busybox_userland()], entrypoint=[], cmd=["sh"])
    tls.push(base, repository="kapsa/busybox", tag="1")
    name = "private-ca-built"
    commit = git_server.create_repo(
        name, files={**SAMPLE_APP, "Dockerfile": _dockerfile(f"{tls.server}/kapsa/busybox:1")}
    )
    manifest = yaml.safe_load(
        project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[{"name": "dev", "branch": "main"}],
        )
    )
    manifest["spec"]["build"]["registryRef"] = {"name": untrusted_registry}
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    built = wait_until(
        lambda: (get(control_plane, "project", name) or {}).get("status", {}).get("latestImage"),
        timeout=BUILD,
        message=lambda: f"{name} built\n{operator.tail()}",
    )
    digest = tls.digest_of(f"apps/{name}", commit[:7])
    assert built == f"{tls.server}/apps/{name}@{digest}"


def test_an_image_that_runs_as_root_is_refused_by_the_kubelet_with_its_reason(
    control_plane: ControlPlane,
    git_server: GitServer,
    platform: Platform,
    operator: OperatorProcess,
) -> None:
    """App pods run as non-root: a Dockerfile without USER fails to start, and says so."""
    name = "rooted"
    _apply(
        control_plane, git_server, name, dockerfile=_dockerfile(platform.images.base, user=False)
    )

    def ready() -> dict[str, str]:
        return condition(get(control_plane, "-n", name, "environment", "dev"), "Ready")

    wait_until(
        lambda: ready().get("reason") == "CreateContainerConfigError",
        timeout=BUILD,
        message=lambda: f"dev reporting the refusal: {ready()}\n{operator.tail()}",
    )
    assert "runAsNonRoot and image will run as root" in ready()["message"]
