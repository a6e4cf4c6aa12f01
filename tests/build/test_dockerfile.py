"""The Dockerfile build Job, held to what buildah and the Job's pod actually accept and report.

The end-to-end runs are in tests/e2e/test_dockerfile.py; these pin the contract with the tools
themselves: every flag the build script gives buildah is one this machine's buildah documents,
the script parses as the builder image's shell reads it, and what users write reaches the pod
only as data.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kapsa.build import BuildRequest
from kapsa.build.dockerfile import (
    CAPABILITIES,
    GIT_CREDENTIALS,
    REGISTRY_AUTH,
    SCRIPT,
    TERMINATION_LOG,
    BuildahSettings,
    DockerfileBuilder,
    failure_message,
)
from kapsa.controlplane.images import BUSYBOX
from kapsa.machines import BuildState

DIGEST = "sha256:" + "ab" * 32


def _request(**changes: object) -> BuildRequest:
    fields: dict[str, object] = {
        "project": "shop",
        "namespace": "shop",
        "branch": "main",
        "branch_slug": "main",
        "commit": "c" * 40,
        "git_url": "https://git.example.com/team/shop.git",
        "tag": "harbor.example.com/team/shop:ccccccc",
        "repository_ref": "harbor.example.com/team/shop",
        "service_account": "kapsa-builder",
        "owner": {"kind": "Project", "name": "shop", "uid": "u"},
        "registry_secret": "kapsa-registry",
        **changes,
    }
    return BuildRequest(**fields)  # type: ignore[arg-type]


def _container(manifest: dict) -> dict:
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    return container


def _buildah_flags(subcommand: str) -> set[str]:
    """The long flags `buildah <subcommand>` documents, global ones included."""
    text = subprocess.run(
        ["buildah", subcommand, "--help"], capture_output=True, text=True, check=True
    ).stdout
    text += subprocess.run(["buildah", "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"--([a-z][a-z-]+)", text))


@pytest.mark.parametrize("subcommand", ["bud", "push"])
def test_every_flag_the_script_gives_buildah_is_one_buildah_documents(subcommand: str) -> None:
    command = re.search(rf"buildah {subcommand} (.*?) -- ", SCRIPT, flags=re.DOTALL)
    assert command is not None
    used = set(re.findall(r"--([a-z][a-z-]+)", command.group(1)))
    assert used, "no flags found"
    assert used <= _buildah_flags(subcommand), used - _buildah_flags(subcommand)


def test_the_script_reads_what_the_job_mounts_where_it_mounts_it() -> None:
    manifest = DockerfileBuilder(BuildahSettings(image="b")).manifest(
        _request(git_secret="kapsa-git")
    )
    mounts = {m["name"]: m["mountPath"] for m in _container(manifest)["volumeMounts"]}
    assert mounts == {"registry": REGISTRY_AUTH, "git": GIT_CREDENTIALS}
    assert f"--authfile={REGISTRY_AUTH}/config.json" in SCRIPT
    assert f"{GIT_CREDENTIALS}/password" in SCRIPT
    assert f"{GIT_CREDENTIALS}/ssh-privatekey" in SCRIPT
    assert f"--digestfile={TERMINATION_LOG}" in SCRIPT


def test_the_script_parses_in_the_builder_images_shell(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text(SCRIPT)
    checked = subprocess.run(
        [str(BUSYBOX), "sh", "-n", str(script)], capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stderr


def test_what_users_write_reaches_the_pod_as_environment_never_as_script() -> None:
    hostile = "Dockerfile$(touch /tmp/owned)`id`"
    manifest = DockerfileBuilder(BuildahSettings(image="builder@" + DIGEST)).manifest(
        _request(dockerfile=hostile, context="app;rm -rf /", branch="x'; id; '")
    )
    container = _container(manifest)
    assert container["command"] == ["/bin/sh", "-c", SCRIPT]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KAPSA_DOCKERFILE"] == hostile
    assert env["KAPSA_CONTEXT"] == "app;rm -rf /"
    assert env["KAPSA_CACHE"] == "harbor.example.com/team/shop/buildcache"
    assert env["KAPSA_TLS_VERIFY"] == "true"


def test_the_pod_runs_unprivileged_without_the_api_token_unless_the_admin_says_otherwise() -> None:
    settings = BuildahSettings(image="builder@" + DIGEST)
    pod = DockerfileBuilder(settings).manifest(_request())["spec"]["template"]["spec"]
    security = _container({"spec": {"template": {"spec": pod}}})["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
    }
    assert pod["automountServiceAccountToken"] is False
    assert "hostNetwork" not in pod
    wider = BuildahSettings(image="b", privileged=True, host_network=True)
    pod = DockerfileBuilder(wider).manifest(_request())["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"] == {"privileged": True}
    assert pod["hostNetwork"] is True


def _finished(kind: str, message: str) -> tuple[dict, dict]:
    manifest = DockerfileBuilder(BuildahSettings(image="b")).manifest(_request())
    job = {**manifest, "status": {"conditions": [{"type": kind, "status": "True"}]}}
    pod = {
        "status": {
            "containerStatuses": [{"name": "build", "state": {"terminated": {"message": message}}}]
        }
    }
    return job, pod


def test_the_image_is_the_digest_the_build_reported_for_its_push() -> None:
    builder = DockerfileBuilder(BuildahSettings(image="b"))
    result = builder.result(*_finished("Complete", DIGEST + "\n"))
    assert result.state is BuildState.SUCCEEDED
    assert result.image == f"harbor.example.com/team/shop@{DIGEST}"
    assert builder.result(*_finished("Complete", "")).state is BuildState.FAILED


def test_a_failure_names_its_step_and_keeps_only_that_steps_output() -> None:
    log = "\n".join(
        [
            "STEP 3/5: RUN npm ci",
            "Copying blob sha256:1234",
            "STEP 3/5: RUN npm ci",
            "npm ERR! missing script: ci",
            'error building at STEP "RUN npm ci": exit status 1',
        ]
    )
    job, pod = _finished("Failed", log)
    message = failure_message(job["status"]["conditions"][0], pod)
    assert message == (
        "build step 3/5 (RUN npm ci) failed: npm ERR! missing script: ci | "
        'error building at STEP "RUN npm ci": exit status 1'
    )


def test_a_build_that_never_ran_says_what_the_job_said() -> None:
    condition = {"type": "Failed", "reason": "DeadlineExceeded", "message": "Job was active longer"}
    assert failure_message(condition, None) == "the build did not finish: Job was active longer"
