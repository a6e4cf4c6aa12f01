"""A ResourceQuota and a LimitRange in every Project namespace, from the platform's defaults.

The schema caps `replicas`, but a team can still run many environments and previews, each with
pods and build Jobs; the quota caps what one Project's namespace can take from the cluster in
total, and the LimitRange gives every container requests and limits (which a quota on cpu and
memory needs, and which a pod without its own then gets). Both are owned by the Project, so they
go with its namespace; a team with `edit` rights in that namespace cannot change them (the
built-in `edit` role only reads quotas and limit ranges).
"""

from __future__ import annotations

import threading

from kapsa.k8s import manifests
from kapsa.k8s.client import JSON
from kapsa.k8s.resources import LIMIT_RANGE, RESOURCE_QUOTA
from kapsa.reconcile.context import Context

QUOTA_NAME = "kapsa-quota"
LIMITS_NAME = "kapsa-limits"


class NamespaceQuota:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._done: dict[str, str] = {}
        self._lock = threading.Lock()

    def ensure(self, project: JSON, *, namespace: str) -> None:
        """Apply both objects once per Project uid and operator start (an SSA no-op after)."""
        settings = self.ctx.settings
        if not settings.namespace_quota and not settings.container_limits:
            return
        key = project["metadata"]["uid"]
        with self._lock:
            if self._done.get(namespace) == key:
                return
        meta = {
            "namespace": namespace,
            "labels": {manifests.LABEL_MANAGED: "kapsa"},
            "ownerReferences": [manifests.owner_reference(project)],
        }
        if settings.namespace_quota:
            self.ctx.kube.apply(
                RESOURCE_QUOTA,
                {
                    "apiVersion": "v1",
                    "kind": "ResourceQuota",
                    "metadata": {"name": QUOTA_NAME, **meta},
                    "spec": {"hard": dict(settings.namespace_quota)},
                },
            )
        if settings.container_limits:
            limit = {
                "type": "Container",
                "default": dict(settings.container_limits),
                "defaultRequest": dict(settings.container_requests),
            }
            self.ctx.kube.apply(
                LIMIT_RANGE,
                {
                    "apiVersion": "v1",
                    "kind": "LimitRange",
                    "metadata": {"name": LIMITS_NAME, **meta},
                    "spec": {"limits": [limit]},
                },
            )
        with self._lock:
            self._done[namespace] = key
