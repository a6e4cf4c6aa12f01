"""Which namespace names a Project may take.

A Project's name becomes a namespace Kapsa creates and owns, and deleting the Project deletes
that namespace with everything in it. So a Project never takes a name that is a Kubernetes
system namespace, Kapsa's own, one the platform admin reserved for later (a monitoring stack
installed next month must not land inside a team's Project and go with it), or one that starts
with a reserved prefix (`kube-` by default). A namespace that already exists and is not the
Project's is refused too (NamespaceConflict, in project.py).
"""

from __future__ import annotations

import re

from kapsa.api.common import DNS_LABEL_PATTERN, NAMESPACE_MAX
from kapsa.reconcile.context import Settings

#: Always refused, whatever the admin configures.
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def namespace_refusal(name: str, settings: Settings) -> str | None:
    """Why a Project named `name` may not have the namespace of that name; None if it may."""
    if len(name) > NAMESPACE_MAX or not re.fullmatch(DNS_LABEL_PATTERN, name):
        return (
            f"a Project's name becomes its namespace, so it must be a DNS label (lower-case "
            f"letters, digits and '-', at most {NAMESPACE_MAX}); {name!r} is not"
        )
    if name in SYSTEM_NAMESPACES or name == settings.namespace:
        return f"namespace {name} belongs to the cluster or to Kapsa; choose another name"
    if name in settings.reserved_namespaces:
        return f"the platform admin reserved namespace {name}; choose another name"
    prefix = next((p for p in settings.reserved_namespace_prefixes if name.startswith(p)), None)
    if prefix is not None:
        return f"names starting with {prefix!r} are reserved by the platform admin"
    return None
