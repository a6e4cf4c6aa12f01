"""Dockerfile builds as a Kubernetes Job, since kpack builds buildpacks only.

The Job runs kaniko (daemonless, no privileges) against the commit and pushes the per-commit tag.
The Job's status says whether it worked; the digest is then read from the registry itself, which
is the one place that knows what was pushed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kapsa.build.base import BuildRequest, BuildResult
from kapsa.machines import BuildState

EXECUTOR_IMAGE = "gcr.io/kaniko-project/executor:v1.23.2"


class DockerfileBuilder:
    kind = "dockerfile"

    @staticmethod
    def object_name(request: BuildRequest) -> str:
        suffix = request.commit[:7]
        if request.trigger:
            suffix += "-" + hashlib.sha256(request.trigger.encode()).hexdigest()[:4]
        return (
            f"{request.project}-{request.branch_slug}"[: 62 - len(suffix)].rstrip("-")
            + f"-{suffix}"
        )

    def manifest(self, request: BuildRequest) -> dict[str, Any]:
        context = f"{request.git_url}#{request.commit}"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.object_name(request),
                "namespace": request.namespace,
                "labels": request.labels,
                "annotations": {"kapsa.io/commit": request.commit, "kapsa.io/tag": request.tag},
                "ownerReferences": [request.owner],
            },
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": request.service_account,
                        "containers": [
                            {
                                "name": "build",
                                "image": EXECUTOR_IMAGE,
                                "args": [
                                    f"--context={context}",
                                    f"--dockerfile={request.dockerfile}",
                                    f"--destination={request.tag}",
                                ],
                                # kaniko clones a private git context with these.
                                "env": _git_credentials_env(request.git_secret),
                            }
                        ],
                    }
                },
            },
        }

    def result(self, job: dict[str, Any] | None) -> BuildResult:
        """Succeeded/Failed from the Job; the digest is resolved by the caller from the registry."""
        if job is None:
            return BuildResult(state=BuildState.NONE)
        commit = job["metadata"].get("annotations", {}).get("kapsa.io/commit")
        for condition in (job.get("status") or {}).get("conditions", []):
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                return BuildResult(state=BuildState.SUCCEEDED, commit=commit)
            if condition.get("type") == "Failed":
                return BuildResult(
                    state=BuildState.FAILED,
                    commit=commit,
                    message=condition.get("message") or condition.get("reason") or "build failed",
                )
        return BuildResult(state=BuildState.RUNNING, commit=commit)


def _git_credentials_env(secret: str | None) -> list[dict[str, Any]]:
    if secret is None:
        return []
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for env, key in (("GIT_USERNAME", "username"), ("GIT_PASSWORD", "password"))
    ]
