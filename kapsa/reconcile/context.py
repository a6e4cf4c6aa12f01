"""Everything a reconcile needs, handed in once: clients, caches, ledger, clock, settings."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kapsa.git.confine import GitRunner
from kapsa.k8s.client import JSON, Kube
from kapsa.k8s.informer import Informer
from kapsa.k8s.resources import SECRET, ResourceType
from kapsa.ledger import Ledger


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Settings:
    """How the operator was started (flags of `kapsa operator`)."""

    namespace: str = "kapsa-system"
    allow_insecure_sources: bool = False
    allow_private_hosts: bool = False
    git_cache: Path = Path("/var/cache/kapsa/git")
    git_timeout: float = 30.0
    confine_git: bool = True
    builder_image: str = "kapsa-builder:0.1.0"
    """The Dockerfile builder's image (sh, git, buildah): built from deploy/builder/Dockerfile
    and pushed by the platform team, as the operator's own image is."""
    build_host_network: bool = False
    """Build pods share the node's network (test grounds serving git and the registry on the
    node's loopback)."""
    build_privileged: bool = False
    """Build containers run privileged instead of with the capabilities chroot isolation needs."""
    """git runs in Landlock-confined threads (kapsa.git.confine), away from the API token."""
    resync_seconds: float = 600.0
    branch_gone_after: int = 2
    """Consecutive successful listings without a branch before its preview counts as gone."""
    registry_ca_bundle: str | None = None
    ssh_known_hosts: Path | None = None
    """A known_hosts file of ssh git hosts every Project may trust (e.g. github.com's keys)."""
    min_poll_interval: float = 10.0
    """Seconds: a shorter spec.source.pollInterval means this (condition PollIntervalRaised)."""
    reserved_namespaces: frozenset[str] = frozenset()
    """Names no Project may take as its namespace, beyond the system ones and Kapsa's own."""
    reserved_namespace_prefixes: tuple[str, ...] = ("kube-", "openshift-")
    namespace_quota: tuple[tuple[str, str], ...] = ()
    """The ResourceQuota of every Project namespace (none when empty); the platform's values
    are the operator's --namespace-quota flags in deploy/kapsa-operator.yaml."""
    container_limits: tuple[tuple[str, str], ...] = ()
    """Limits the LimitRange gives containers that set none (no LimitRange when empty)."""
    container_requests: tuple[tuple[str, str], ...] = ()
    """Requests the LimitRange gives containers that set none."""


@dataclass
class Caches:
    """Watch caches by resource plural."""

    informers: dict[str, Informer] = field(default_factory=dict)

    def __getitem__(self, resource: ResourceType) -> Informer:
        return self.informers[resource.plural]


@dataclass
class Context:
    kube: Kube
    caches: Caches
    ledger: Ledger
    settings: Settings
    enqueue: Callable[[Hashable], None]
    enqueue_after: Callable[[Hashable, float], None]
    now: Callable[[], datetime] = utcnow
    git: GitRunner = field(default_factory=GitRunner)
    """Every call that starts git goes through here: `ctx.git(list_branches, url, ...)`."""

    def secret(self, name: str, namespace: str | None) -> JSON | None:
        """A Secret Kapsa reads: from the watch cache of its own namespace, else one GET.

        Kapsa may watch Secrets only in its own namespace (no cluster-wide Secret listing), so
        references elsewhere cost a request; the common case (credentials kept in
        kapsa-system) costs none.
        """
        namespace = namespace or self.settings.namespace
        informer = self.caches.informers.get(SECRET.plural)
        if informer is not None and namespace == informer.namespace:
            return informer.get(name, namespace)
        return self.kube.get(SECRET, name, namespace=namespace)
