"""The identities builds and apps run as in a Project's namespace: ServiceAccounts and Secrets.

kpack and the Dockerfile Job read credentials from Secrets in their own namespace, so Kapsa keeps
copies there, owned by the Project (deleted with it) and refreshed when the source changes: the
registry's push credentials (annotated `kpack.io/docker`) and, for a private repository, its git
credentials (annotated `kpack.io/git`), only once tenancy.py let the Project use them, and only
their git keys. Kapsa's own objects only ever hold the references.

App pods run as a ServiceAccount of their own, `kapsa-app`, whose only credential is a pull
secret for the Registry, named in `imagePullSecrets` and never mounted: the kubelet uses it to
pull, the app never sees it, and the builder's push credentials stay with the builder. It mounts
no API token either: an app has no business with the Kubernetes API.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

from kapsa.k8s import manifests
from kapsa.k8s.client import JSON
from kapsa.k8s.resources import SECRET, SERVICE_ACCOUNT
from kapsa.reconcile.builds import BUILDER_SA, GIT_SECRET, REGISTRY_CA_KEY, REGISTRY_SECRET
from kapsa.reconcile.context import Context
from kapsa.reconcile.tenancy import git_copy_data, git_secret

PULL_SECRET = "kapsa-registry-pull"  # noqa: S105 (a Secret's name, not a password)


def registry_ca(ctx: Context) -> str:
    """The operator's --registry-ca-bundle, base64 as a Secret holds it; empty without one."""
    path = ctx.settings.registry_ca_bundle
    if not path:
        return ""
    return base64.b64encode(Path(path).read_bytes()).decode()


class BuildIdentity:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Read once: the flag names one file for the operator's life, and every Project's
        # reconcile would otherwise read it again to see whether anything changed.
        self._ca = registry_ca(ctx)
        self._done: dict[str, str] = {}
        self._lock = threading.Lock()

    def ensure(self, project: JSON, *, namespace: str, registry: JSON) -> None:
        """Apply the copies and the ServiceAccount, unless nothing changed since last time."""
        ctx = self.ctx
        ref = registry["spec"]["credentialsSecretRef"]
        push = ctx.secret(ref["name"], ref.get("namespace"))
        git = git_secret(ctx, project)  # refused before this point when not the Project's
        key = "/".join([project["metadata"]["uid"], *(_version(s) for s in (push, git)), self._ca])
        with self._lock:
            accounts = ctx.caches[SERVICE_ACCOUNT]
            if (
                self._done.get(namespace) == key
                and accounts.get(BUILDER_SA, namespace)
                and accounts.get(manifests.APP_SERVICE_ACCOUNT, namespace)
            ):
                return
        owner = manifests.owner_reference(project)
        secrets = []
        if push is not None:
            data = push.get("data") or {}
            if push.get("type") != "kubernetes.io/dockerconfigjson":
                data = {".dockerconfigjson": _dockerconfig_from_basic(registry, data)}
            server = registry["spec"]["server"]
            ca = self._ca
            ctx.kube.apply(
                SECRET,
                _copy(
                    REGISTRY_SECRET,
                    namespace,
                    owner,
                    # Dockerfile builds trust the registry's private CA from the same Secret.
                    data={**data, REGISTRY_CA_KEY: ca} if ca else data,
                    type_="kubernetes.io/dockerconfigjson",
                    annotations={"kpack.io/docker": server},
                ),
            )
            secrets.append(REGISTRY_SECRET)
            ctx.kube.apply(
                SECRET,
                _copy(
                    PULL_SECRET,
                    namespace,
                    owner,
                    data=data,
                    type_="kubernetes.io/dockerconfigjson",
                    annotations={},
                ),
            )
        if git is not None:
            url = project["spec"]["source"]["git"]["url"]
            data, type_ = git_copy_data(git)
            ctx.kube.apply(
                SECRET,
                _copy(
                    GIT_SECRET,
                    namespace,
                    owner,
                    data=data,
                    type_=type_,
                    annotations={"kpack.io/git": _git_origin(url)},
                ),
            )
            secrets.append(GIT_SECRET)
        ctx.kube.apply(
            SERVICE_ACCOUNT,
            _account(
                BUILDER_SA,
                namespace,
                owner,
                secrets=[{"name": s} for s in secrets],
                imagePullSecrets=[{"name": REGISTRY_SECRET}],
            ),
        )
        ctx.kube.apply(
            SERVICE_ACCOUNT,
            _account(
                manifests.APP_SERVICE_ACCOUNT,
                namespace,
                owner,
                imagePullSecrets=[{"name": PULL_SECRET}] if push is not None else [],
                automountServiceAccountToken=False,
            ),
        )
        with self._lock:
            self._done[namespace] = key


def _account(name: str, namespace: str, owner: JSON, **fields: object) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {manifests.LABEL_MANAGED: "kapsa"},
            "ownerReferences": [owner],
        },
        **fields,
    }


def _version(secret: JSON | None) -> str:
    return str(secret["metadata"]["resourceVersion"]) if secret else "-"


def _copy(
    name: str, namespace: str, owner: JSON, *, data: JSON, type_: str, annotations: dict[str, str]
) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {manifests.LABEL_MANAGED: "kapsa"},
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "data": data,
    }


def _git_origin(url: str) -> str:
    """What kpack matches git Secrets by: `https://host` for http(s), `git@host` for ssh."""
    if "://" not in url and "@" in url:  # scp-like: git@host:path
        return url.split(":", 1)[0]
    parts = urlsplit(url)
    if parts.scheme == "ssh":
        return f"{parts.username or 'git'}@{parts.hostname}"
    return f"{parts.scheme}://{parts.netloc}"


def _dockerconfig_from_basic(registry: JSON, data: dict[str, str]) -> str:
    user = base64.b64decode(data.get("username", "")).decode()
    password = base64.b64decode(data.get("password", "")).decode()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    server = registry["spec"]["server"]
    config = {"auths": {server: {"username": user, "password": password, "auth": auth}}}
    return base64.b64encode(json.dumps(config).encode()).decode()
