"""Buildpacks through a kpack `Image` (kpack.io/v1alpha2, the only version served without
kpack's conversion webhook).

kpack's `spec.tag` is immutable, so there is one Image per branch with a stable tag
(`<server>/<repository>:<branch-slug>`), its revision pinned to the commit Kapsa resolved (so kpack
does not poll the branch itself), and the per-commit tag users see in `additionalTags`.
"""

from __future__ import annotations

from typing import Any

from kapsa.build.base import BuildRequest, BuildResult
from kapsa.machines import BuildState

ANNOTATION_COMMIT = "kapsa.io/commit"
TRIGGER_ENV = "KAPSA_BUILD_TRIGGER"


class KpackBuilder:
    kind = "buildpacks"

    @staticmethod
    def object_name(request: BuildRequest) -> str:
        return f"{request.project}-{request.branch_slug}"[:63].rstrip("-")

    def manifest(self, request: BuildRequest) -> dict[str, Any]:
        build_env = [{"name": TRIGGER_ENV, "value": request.trigger}] if request.trigger else []
        return {
            "apiVersion": "kpack.io/v1alpha2",
            "kind": "Image",
            "metadata": {
                "name": self.object_name(request),
                "namespace": request.namespace,
                "labels": request.labels,
                "annotations": {ANNOTATION_COMMIT: request.commit},
                "ownerReferences": [request.owner],
            },
            "spec": {
                "tag": f"{request.repository_ref}:{request.branch_slug}",
                "additionalTags": [request.tag],
                "serviceAccountName": request.service_account,
                "builder": {"kind": request.builder_kind, "name": request.builder_name},
                "source": {"git": {"url": request.git_url, "revision": request.commit}},
                "build": {"env": build_env},
                "successBuildHistoryLimit": 10,
                "failedBuildHistoryLimit": 10,
            },
        }

    def result(self, image: dict[str, Any] | None) -> BuildResult:
        """Read an Image as kpack leaves it; a status older than the spec is still running."""
        if image is None:
            return BuildResult(state=BuildState.NONE)
        commit = image["spec"]["source"]["git"]["revision"]
        status = image.get("status") or {}
        if status.get("observedGeneration") != image["metadata"].get("generation"):
            return BuildResult(state=BuildState.RUNNING, commit=commit)
        ready = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") == "Unknown":
            return BuildResult(state=BuildState.RUNNING, commit=commit)
        if ready.get("status") == "True" and status.get("latestImage"):
            return BuildResult(
                state=BuildState.SUCCEEDED, commit=commit, image=status["latestImage"]
            )
        return BuildResult(
            state=BuildState.FAILED,
            commit=commit,
            message=ready.get("message") or ready.get("reason") or "the build failed",
        )
