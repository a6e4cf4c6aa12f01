"""The Kubernetes objects an Environment runs as, derived only from their inputs.

Names come from the Environment, so applying the same inputs twice changes nothing; every object
is owned by its Environment, so deleting the Environment lets the garbage collector remove them.
"""

from __future__ import annotations

from typing import Any

from kapsa.k8s.client import JSON

LABEL_PROJECT = "kapsa.io/project"
LABEL_ENVIRONMENT = "kapsa.io/environment"
LABEL_TYPE = "kapsa.io/type"
LABEL_BRANCH = "kapsa.io/branch"
LABEL_MANAGED = "app.kubernetes.io/managed-by"
ANNOTATION_COMMIT = "kapsa.io/commit"
ANNOTATION_ISSUER = "cert-manager.io/cluster-issuer"
#: The ServiceAccount app pods run as: it carries the registry pull secret and nothing else.
APP_SERVICE_ACCOUNT = "kapsa-app"
#: The variable that tells an app which commit it runs.
COMMIT_VARIABLE = "KAPSA_COMMIT"
#: What every app container runs with: no root, no privilege escalation, no capabilities, the
#: runtime's default seccomp profile. An image that needs root fails to start with the kubelet's
#: reason (CreateContainerConfigError) on its Environment.
POD_SECURITY: JSON = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
#: How long a terminating app pod keeps serving before it is asked to stop.
DRAIN_SECONDS = 5
CONTAINER_SECURITY: JSON = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def owner_reference(owner: JSON, *, controller: bool = True) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def _meta(*, name: str, namespace: str | None, labels: dict[str, str], owner: JSON) -> JSON:
    meta: JSON = {
        "name": name,
        "labels": {**labels, LABEL_MANAGED: "kapsa"},
        "ownerReferences": [owner_reference(owner)],
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def namespace(*, name: str, project: JSON) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(
            name=name,
            namespace=None,
            labels={LABEL_PROJECT: project["metadata"]["name"]},
            owner=project,
        ),
    }


def environment_labels(*, project: str, environment: str, env_type: str) -> dict[str, str]:
    return {LABEL_PROJECT: project, LABEL_ENVIRONMENT: environment, LABEL_TYPE: env_type}


def deployment(
    *,
    environment: JSON,
    image: str,
    commit: str | None,
    port: int,
    replicas: int,
    env: list[JSON],
    secret_names: list[str],
    health_path: str | None,
    resources: JSON,
) -> JSON:
    """The app's Deployment: pinned to an image digest, rolled over without a gap.

    A rolling update never takes a ready pod away before its replacement is ready
    (maxUnavailable 0), so an environment answers throughout a rollout. Without a health path
    a pod counts as ready once it accepts connections on its port, never merely once started.
    """
    meta = environment["metadata"]
    labels = environment_labels(
        project=environment["spec"]["project"],
        environment=meta["name"],
        env_type=environment["spec"].get("type", "standard"),
    )
    selector = {LABEL_PROJECT: labels[LABEL_PROJECT], LABEL_ENVIRONMENT: meta["name"]}
    builtin = [{"name": "PORT", "value": str(port)}]
    if commit:
        builtin.append({"name": COMMIT_VARIABLE, "value": commit})
    container: JSON = {
        "name": "app",
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [*builtin, *env],
        "envFrom": [{"secretRef": {"name": s}} for s in secret_names],
        "resources": resources,
        "securityContext": CONTAINER_SECURITY,
        # A terminating pod keeps serving while kube-proxy stops sending it traffic: Kubernetes
        # removes it from the Endpoints and signals it at the same moment. An image without
        # `sleep` fails the hook, which the kubelet logs and goes on from.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}}},
    }
    if health_path:
        probe: JSON = {"httpGet": {"path": health_path, "port": "http"}}
        container["readinessProbe"] = {**probe, "periodSeconds": 2}
        container["livenessProbe"] = {**probe, "initialDelaySeconds": 10}
    else:
        container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 2}
    pod_annotations = {ANNOTATION_COMMIT: commit} if commit else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(
            name=meta["name"], namespace=meta["namespace"], labels=labels, owner=environment
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
            },
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations},
                "spec": {
                    "serviceAccountName": APP_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [container],
                },
            },
        },
    }


def service(*, environment: JSON, port: int) -> JSON:
    meta = environment["metadata"]
    labels = environment_labels(
        project=environment["spec"]["project"],
        environment=meta["name"],
        env_type=environment["spec"].get("type", "standard"),
    )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(
            name=meta["name"], namespace=meta["namespace"], labels=labels, owner=environment
        ),
        "spec": {
            "selector": {
                LABEL_PROJECT: labels[LABEL_PROJECT],
                LABEL_ENVIRONMENT: meta["name"],
            },
            "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}],
        },
    }


def tls_secret_name(environment_name: str) -> str:
    return f"{environment_name}-tls"


def ingress(*, environment: JSON, host: str, ingress_class: str, cluster_issuer: str) -> JSON:
    meta = environment["metadata"]
    labels = environment_labels(
        project=environment["spec"]["project"],
        environment=meta["name"],
        env_type=environment["spec"].get("type", "standard"),
    )
    metadata = _meta(
        name=meta["name"], namespace=meta["namespace"], labels=labels, owner=environment
    )
    metadata["annotations"] = {ANNOTATION_ISSUER: cluster_issuer}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {
            "ingressClassName": ingress_class,
            "tls": [{"hosts": [host], "secretName": tls_secret_name(meta["name"])}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": meta["name"], "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def contains(observed: Any, desired: Any) -> bool:
    """Whether the live object already has every field Kapsa wants (server defaults aside).

    Used before applying, so that a reconcile in which nothing changed sends no write.
    """
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(
            contains(observed[k], v) if k in observed else v in ({}, [], None)
            for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)
