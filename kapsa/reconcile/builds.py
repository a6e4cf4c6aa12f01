"""Builds: from (branch, commit) to a build object, and from its status to an image.

The strategy is chosen per commit (a Dockerfile there means the Dockerfile builder, otherwise
buildpacks through kpack), remembered, and the build object is applied only when it is not
already what it should be, so a reconcile in which nothing changed writes nothing.
"""

from __future__ import annotations

import base64
import threading

from kapsa import metrics
from kapsa.api.naming import image_tag, slug
from kapsa.build import BuildRequest, BuildResult, DockerfileBuilder, KpackBuilder
from kapsa.build.dockerfile import BuildahSettings
from kapsa.errors import KapsaError
from kapsa.git.strategy import detect_strategy
from kapsa.k8s import manifests
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.resources import JOB, KPACK_IMAGE, POD
from kapsa.machines import BuildState
from kapsa.reconcile.context import Context
from kapsa.reconcile.sources import checked_url
from kapsa.reconcile.tenancy import git_credentials
from kapsa.registry import RegistryCredentials
from kapsa.registry.credentials import credentials_from_secret

BUILDER_SA = "kapsa-builder"
#: The copy of a private repository's credentials that builds read (see identity.py).
GIT_SECRET = "kapsa-git"  # noqa: S105 (a Secret's name, not a password)
#: The Registry's credentials in the Project's namespace, as a docker config (push and pull).
REGISTRY_SECRET = "kapsa-registry"  # noqa: S105 (a Secret's name, not a password)
#: The key of that Secret holding the CA of a registry with a private one (--registry-ca-bundle).
REGISTRY_CA_KEY = "ca.crt"
ANNOTATION_REBUILD = "kapsa.io/rebuild"
#: Finished Dockerfile builds whose outcome is remembered (the oldest forgotten first).
FINISHED_KEPT = 4096


def registry_credentials(ctx: Context, registry: JSON) -> RegistryCredentials | None:
    """The push credentials of a Registry, read from its Secret (never copied into status)."""
    ref = registry["spec"].get("credentialsSecretRef") or {}
    secret = ctx.secret(ref["name"], ref.get("namespace")) if ref.get("name") else None
    if secret is None:
        return None
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    return credentials_from_secret(
        secret_type=secret.get("type", ""), data=data, server=registry["spec"]["server"]
    )


class Builds:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.kpack = KpackBuilder()
        self.dockerfile = DockerfileBuilder(
            BuildahSettings(
                image=ctx.settings.builder_image,
                host_network=ctx.settings.build_host_network,
                privileged=ctx.settings.build_privileged,
            )
        )
        self._finished: dict[str, BuildResult] = {}
        self._lock = threading.Lock()
        self._strategies: dict[tuple[str, str], str] = {}

    def strategy(self, *, project: JSON, url: str, commit: str) -> str:
        wanted = project["spec"]["build"].get("strategy", "auto")
        if wanted != "auto":
            return str(wanted)
        key = (url, commit)
        if key not in self._strategies:
            self._strategies[key] = self.ctx.git(
                detect_strategy,
                checked_url(self.ctx, url),
                commit,
                dockerfile=project["spec"]["build"].get("dockerfile", "Dockerfile"),
                credentials=git_credentials(self.ctx, project),
                cache_dir=self.ctx.settings.git_cache,
                timeout=self.ctx.settings.git_timeout,
            )
        return self._strategies[key]

    def build_request(
        self,
        obj: JSON,
        *,
        registry: JSON,
        namespace: str,
        url: str,
        branch: str,
        commit: str,
        preview: bool = False,
        branch_slug: str | None = None,
    ) -> BuildRequest:
        spec = obj["spec"]
        server = registry["spec"]["server"]
        repository = spec["build"]["repository"]
        the_slug = branch_slug or slug(branch) or "branch"
        return BuildRequest(
            project=obj["metadata"]["name"],
            namespace=namespace,
            branch=branch,
            branch_slug=the_slug,
            commit=commit,
            git_url=url,
            tag=image_tag(
                server=server,
                repository=repository,
                commit=commit,
                branch_slug=the_slug if preview else None,
            ),
            repository_ref=f"{server}/{repository}",
            service_account=BUILDER_SA,
            owner=manifests.owner_reference(obj),
            registry_secret=REGISTRY_SECRET,
            registry_ca_key=REGISTRY_CA_KEY if self.ctx.settings.registry_ca_bundle else None,
            insecure_registry=bool(registry["spec"].get("insecure")),
            preview=preview,
            trigger=obj["metadata"].get("annotations", {}).get(ANNOTATION_REBUILD),
            builder_kind=spec["build"].get("builder", {}).get("kind", "ClusterBuilder"),
            builder_name=spec["build"].get("builder", {}).get("name", "default"),
            dockerfile=spec["build"].get("dockerfile", "Dockerfile"),
            context=spec["build"].get("context", "."),
            git_secret=GIT_SECRET if spec["source"]["git"].get("secretRef") else None,
            labels={
                manifests.LABEL_PROJECT: obj["metadata"]["name"],
                manifests.LABEL_BRANCH: the_slug,
                manifests.LABEL_MANAGED: "kapsa",
            },
        )

    def object_name(self, request: BuildRequest) -> str:
        """The build object's name; kpack's, since previews always have one Image per branch."""
        return self.kpack.object_name(request)

    def ensure_build(self, obj: JSON, *, request: BuildRequest, url: str) -> BuildResult:
        """Apply the build object if it is not what it should be; read its result."""
        ctx = self.ctx
        try:
            strategy = self.strategy(project=obj, url=url, commit=request.commit)
        except KapsaError as error:
            return BuildResult(
                state=BuildState.FAILED,
                commit=request.commit,
                message=f"could not read the commit: {error}",
            )
        if strategy == "dockerfile":
            manifest = self.dockerfile.manifest(request)
            informer = ctx.caches[JOB]
            live = informer.get(manifest["metadata"]["name"], request.namespace)
            if live is None:
                try:
                    live = ctx.kube.create(JOB, manifest)
                    metrics.count_build_started(preview=request.preview)
                except ApiError as error:
                    if error.status != 409:
                        raise
                    live = ctx.kube.get(
                        JOB, manifest["metadata"]["name"], namespace=request.namespace
                    )
            if live is None:  # deleted between the conflict and the read: next reconcile
                return BuildResult(state=BuildState.RUNNING, commit=request.commit)
            return self._dockerfile_result(live)
        manifest = self.kpack.manifest(request)
        live = ctx.caches[KPACK_IMAGE].get(manifest["metadata"]["name"], request.namespace)
        if live is None or not manifests.contains(live, manifest):
            live = ctx.kube.apply(KPACK_IMAGE, manifest)
            metrics.count_build_started(preview=request.preview)
        return self.kpack.result(live)

    def _dockerfile_result(self, job: JSON) -> BuildResult:
        """The Job's outcome, with the digest or the failure its pod reported.

        A finished Job's pod is read once (one list by the Job's uid) and its result kept: a
        Job never changes once Complete or Failed, and the Project reconciles often.
        """
        uid = job["metadata"]["uid"]
        with self._lock:
            if uid in self._finished:
                return self._finished[uid]
        unfinished = self.dockerfile.result(job, None)
        if unfinished.state == BuildState.RUNNING:
            return unfinished
        pods = self.ctx.kube.list(
            POD, namespace=job["metadata"]["namespace"], label_selector=f"controller-uid={uid}"
        ).get("items", [])
        result = self.dockerfile.result(job, pods[0] if pods else None)
        with self._lock:
            if len(self._finished) >= FINISHED_KEPT:  # Jobs go after a day; so may these
                del self._finished[next(iter(self._finished))]
            self._finished[uid] = result
        return result
