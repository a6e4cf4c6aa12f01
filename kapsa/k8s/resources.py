"""The API resources Kapsa reads and writes, named once so every path is built the same way."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, *, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


PROJECT = ResourceType("kapsa.io", "v1alpha1", "projects", "Project", namespaced=False)
ENVIRONMENT = ResourceType("kapsa.io", "v1alpha1", "environments", "Environment", namespaced=True)
DOMAIN_POOL = ResourceType("kapsa.io", "v1alpha1", "domainpools", "DomainPool", namespaced=False)
REGISTRY = ResourceType("kapsa.io", "v1alpha1", "registries", "Registry", namespaced=False)

NAMESPACE = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
SECRET = ResourceType("", "v1", "secrets", "Secret", namespaced=True)
SERVICE_ACCOUNT = ResourceType("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True)
SERVICE = ResourceType("", "v1", "services", "Service", namespaced=True)
RESOURCE_QUOTA = ResourceType("", "v1", "resourcequotas", "ResourceQuota", namespaced=True)
LIMIT_RANGE = ResourceType("", "v1", "limitranges", "LimitRange", namespaced=True)
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints", namespaced=True)
POD = ResourceType("", "v1", "pods", "Pod", namespaced=True)
EVENT = ResourceType("", "v1", "events", "Event", namespaced=True)
DEPLOYMENT = ResourceType("apps", "v1", "deployments", "Deployment", namespaced=True)
INGRESS = ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", namespaced=True)
JOB = ResourceType("batch", "v1", "jobs", "Job", namespaced=True)
LEASE = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
KPACK_IMAGE = ResourceType("kpack.io", "v1alpha2", "images", "Image", namespaced=True)
CLUSTER_ISSUER = ResourceType(
    "cert-manager.io", "v1", "clusterissuers", "ClusterIssuer", namespaced=False
)
