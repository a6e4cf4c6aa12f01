"""A repository with a Dockerfile is built by a Job, not kpack, and runs by digest."""

from __future__ import annotations

from kapsa.controlplane import ControlPlane
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from tests.e2e.harness import (
    OperatorProcess,
    get,
    history,
    moves,
    project_yaml,
    status_of,
    wait_for_commit,
    wait_for_project_phase,
)


def test_a_dockerfile_means_a_build_job_and_the_digest_from_the_registry(
    control_plane: ControlPlane,
    git_server: GitServer,
    registry_server: RegistryServer,
    operator: OperatorProcess,
    operator_ledger: str,
) -> None:
    name = "docked"
    commit = git_server.create_repo(
        name, files={"Dockerfile": "FROM scratch\nCOPY app /app\n", "app": "binary\n"}
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

    digest = registry_server.put_image(repository=f"apps/{name}", tag=commit[:7])
    image = f"{registry_server.server}/apps/{name}@{digest}"
    assert status_of(control_plane, "-n", name, "environment", "dev")["image"] == image
    deployment = get(control_plane, "-n", name, "deployment", "dev")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image

    newer = git_server.commit(name, branch="main", files={"app": "binary v2\n"})
    wait_for_commit(control_plane, name, "dev", newer, operator)
    assert len(get(control_plane, "-n", name, "jobs")["items"]) == 2
    assert moves(history(operator_ledger, name), kind="Environment", name="dev")[-1] == (
        "Deploying",
        "Running",
        "rollout_ready",
    )
