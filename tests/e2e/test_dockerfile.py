"""A repository with a Dockerfile is built by a Job, not kpack, and runs by digest.

The Job is completed by the build-Job SIMULATOR (the builder's image cannot run here), which
pushes a runnable image of the commit; the pods that run it are real.
"""

from __future__ import annotations

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from tests.e2e.harness import (
    SAMPLE_APP,
    OperatorProcess,
    condition,
    get,
    history,
    moves,
    project_yaml,
    serves,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)
from tests.waiting import wait_until

DOCKERFILE = "FROM busybox\nCOPY . /workspace\nWORKDIR /workspace\nUSER 1000\nCMD sh serve.sh\n"


def test_a_dockerfile_means_a_build_job_and_the_digest_from_the_registry(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "docked"
    commit = git_server.create_repo(name, files={**SAMPLE_APP, "Dockerfile": DOCKERFILE})
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[{"name": "dev", "branch": "main"}],
        ),
    )
    wait_for_project_phase(control_plane, name, "Running", operator)

    jobs = get(control_plane, "-n", name, "jobs")["items"]
    assert [j["metadata"]["name"] for j in jobs] == [f"{name}-main-{commit[:7]}"]
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    tag = f"{registry_server.server}/apps/{name}:{commit[:7]}"
    assert f"--destination={tag}" in container["args"]
    assert f"--context={git_server.url_for(name)}#{commit}" in container["args"]
    assert "--dockerfile=Dockerfile" in container["args"]
    assert jobs[0]["spec"]["template"]["spec"]["serviceAccountName"] == "kapsa-builder"
    assert get(control_plane, "-n", name, "images.kpack.io")["items"] == []

    digest = registry_server.digest_of(f"apps/{name}", commit[:7])
    image = f"{registry_server.server}/apps/{name}@{digest}"
    assert status_of(control_plane, "-n", name, "environment", "dev")["image"] == image
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    serves(control_plane, name, "dev", f"Hello from Kapsa\ncommit: {commit}\n")

    newer = git_server.commit(name, branch="main", files={"greeting.txt": "v2\n"})
    wait_for_commit(control_plane, name, "dev", newer, operator)
    serves(control_plane, name, "dev", f"v2\ncommit: {newer}\n")
    assert len(get(control_plane, "-n", name, "jobs")["items"]) == 2
    assert moves(history(operator_ledger, name), kind="Environment", name="dev")[-1] == (
        "Deploying",
        "Running",
        "rollout_ready",
    )


def test_an_image_that_runs_as_root_is_refused_by_the_kubelet_with_its_reason(
    control_plane: ControlPlane, git_server: GitServer, operator: OperatorProcess
) -> None:
    """App pods run as non-root: a Dockerfile without USER fails to start, and says so."""
    name = "rooted"
    git_server.create_repo(
        name, files={**SAMPLE_APP, "Dockerfile": DOCKERFILE.replace("USER 1000\n", "")}
    )
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=project_yaml(
            name=name,
            url=git_server.url_for(name),
            environments=[{"name": "dev", "branch": "main"}],
        ),
    )

    def ready() -> dict[str, str]:
        return condition(get(control_plane, "-n", name, "environment", "dev"), "Ready")

    wait_until(
        lambda: ready().get("reason") == "CreateContainerConfigError",
        timeout=90,
        message=lambda: f"dev reporting the refusal: {ready()}\n{operator.tail()}",
    )
    assert "runAsNonRoot and image will run as root" in ready()["message"]
