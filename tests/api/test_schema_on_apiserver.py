"""The generated CRDs on a real kube-apiserver: nothing Kapsa writes is pruned, bad input refused.

Objects go in through `kubectl apply -f -`, as users write them. Rejections are checked with
`--validate=false`, so what is asserted is the API server's own verdict from the CRD schema: the one
every client meets, including the operator and kubectl versions that validate differently.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from pydantic import BaseModel

from kapsa.api import GROUP, VERSION, DomainPool, Environment, Project, Registry
from kapsa.api.common import Resource
from tests.plugins.cluster import Kubectl

LAST_TRANSITION = {
    "seq": 7,
    "from": "Building",
    "to": "Deploying",
    "trigger": "build_succeeded",
    "reason": "BuildSucceeded",
    "message": "image pushed",
    "at": "2026-11-27T10:00:00Z",
    "commit": "def456e",
    "image": "harbor.corp.com/myapp/api@sha256:" + "a" * 64,
}
CONDITIONS = [
    {
        "type": "Ready",
        "status": "True",
        "reason": "Running",
        "message": "every environment answers",
        "lastTransitionTime": "2026-11-27T10:00:00Z",
        "observedGeneration": 1,
    },
    {
        "type": "BuildSucceeded",
        "status": "False",
        "reason": "BuildFailed",
        "message": "buildpack detection failed",
        "lastTransitionTime": "2026-11-27T09:00:00Z",
        "observedGeneration": 1,
    },
]

PROJECT_SPEC: dict[str, Any] = {
    "source": {
        "git": {
            "url": "https://git.corp.com/myapp/api.git",
            "secretRef": {"name": "api-git", "namespace": "kapsa-system"},
        },
        "pollInterval": "1h30m",
        "webhookSecretRef": {"name": "api-webhook", "namespace": "kapsa-system"},
    },
    "build": {
        "strategy": "dockerfile",
        "builder": {"kind": "Builder", "name": "java"},
        "registryRef": {"name": "harbor"},
        "repository": "myapp/api",
        "dockerfile": "deploy/Dockerfile",
        "context": "services/api",
    },
    "domainPoolRef": {"name": "apps"},
    "app": {
        "port": 3000,
        "replicas": 2,
        "env": [{"name": "LOG_LEVEL", "value": "debug"}],
        "healthPath": "/healthz",
        "rolloutDeadline": "15m",
        "resources": {
            "requests": {"cpu": "100m", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
    },
    "environments": [
        {
            "name": "dev",
            "branch": "main",
            "autoSync": True,
            "autoRollback": True,
            "secretRefs": [{"name": "dev-env"}],
        },
        {
            "name": "prod",
            "branch": "release",
            "autoSync": False,
            "autoRollback": False,
            "secretRefs": [{"name": "p"}],
        },
    ],
    "previewEnvironments": {
        "enabled": True,
        "include": ["feature/*"],
        "exclude": ["feature/wip-*"],
        "ttl": "72h",
        "maxAge": "14d",
        "maxCount": 5,
        "secretRefs": [{"name": "preview-env"}],
    },
}
PROJECT_STATUS: dict[str, Any] = {
    "phase": "Running",
    "message": "all environments run def456e",
    "latestCommit": "def456e",
    "shortCommit": "def456e",
    "latestImage": "harbor.corp.com/myapp/api@sha256:" + "a" * 64,
    "namespace": "api",
    "branches": [
        {"name": "main", "commit": "def456e", "builtCommit": "def456e", "image": "img@sha256:1"}
    ],
    "previews": [
        {
            "name": "feature-new-api",
            "branch": "feature/new-api",
            "commit": "xyz789a",
            "builtCommit": "xyz789a",
            "image": "img@sha256:2",
            "buildState": "Failed",
            "message": "npm install failed",
            "buildStartedAt": "2026-11-27T09:58:10Z",
            "gone": False,
            "expiredCommit": "abc123d",
            "waiting": False,
        }
    ],
    "environments": [
        {"name": "dev", "type": "standard", "phase": "Running", "url": "https://dev.api.apps.c"}
    ],
    "conditions": CONDITIONS,
    "observedGeneration": 1,
    "lastTransition": LAST_TRANSITION,
    "lastPollTime": "2026-11-27T10:00:00Z",
    "lastHandledReconcileAt": "2026-11-27T10:00:00.000001Z",
}
RELEASE_REQUEST: dict[str, Any] = {
    "rollbackTo": "abc123d",
    "promoteFrom": "dev",
    "minReady": "10m",
    "requestedAt": "2026-11-27T10:00:00Z",
}
ENVIRONMENT_SPEC: dict[str, Any] = {
    "project": "api",
    "type": "preview",
    "branch": "feature/new-api",
    "autoSync": False,
    "secretRefs": [{"name": "api-secrets-dev"}],
    "autoRollback": True,
    "release": RELEASE_REQUEST,
}
ENVIRONMENT_STATUS: dict[str, Any] = {
    "phase": "Deploying",
    "message": "rolling out xyz789a",
    "url": "https://feature-new-api.api.apps.corp.com",
    "host": "feature-new-api.api.apps.corp.com",
    "image": "harbor.corp.com/myapp/api@sha256:" + "b" * 64,
    "commit": "abc123d",
    "shortCommit": "abc123d",
    "targetImage": "harbor.corp.com/myapp/api@sha256:" + "c" * 64,
    "targetCommit": "xyz789a",
    "rolloutStartedAt": "2026-11-27T10:00:00Z",
    "expiresAt": "2026-12-04T10:00:00Z",
    "targetSource": "rollback",
    "quarantinedCommits": [
        {"commit": "def456e", "reason": "rollback", "at": "2026-11-27T10:00:00Z"}
    ],
    "release": {
        "request": RELEASE_REQUEST,
        "outcome": "Accepted",
        "message": "Rolling back to abc123d.",
        "source": "rollback",
        "commit": "abc123d",
        "image": "harbor.corp.com/myapp/api@sha256:" + "b" * 64,
        "at": "2026-11-27T10:00:00Z",
    },
    "conditions": CONDITIONS,
    "observedGeneration": 2,
    "lastTransition": LAST_TRANSITION,
}
DOMAIN_POOL_SPEC = {
    "baseDomain": "apps.corp.com",
    "clusterIssuerRef": {"name": "letsencrypt-prod"},
    "ingressClassName": "traefik",
}
DOMAIN_POOL_STATUS = {"conditions": CONDITIONS, "observedGeneration": 3}
REGISTRY_SPEC = {
    "server": "harbor.corp.com:8443",
    "credentialsSecretRef": {"name": "harbor-push", "namespace": "kapsa-system"},
    "insecure": True,
}
REGISTRY_STATUS = {
    "verified": True,
    "lastVerifiedTime": "2026-11-27T10:00:00Z",
    "conditions": CONDITIONS,
    "observedGeneration": 4,
}

SAMPLES: list[tuple[type[Resource[Any, Any]], dict[str, Any], dict[str, Any]]] = [
    (Project, PROJECT_SPEC, PROJECT_STATUS),
    (Environment, ENVIRONMENT_SPEC, ENVIRONMENT_STATUS),
    (DomainPool, DOMAIN_POOL_SPEC, DOMAIN_POOL_STATUS),
    (Registry, REGISTRY_SPEC, REGISTRY_STATUS),
]
SAMPLE_IDS = [kind.kind_name for kind, _, _ in SAMPLES]


def unset_fields(model: BaseModel, path: str) -> list[str]:
    """Fields a sample leaves at their default: a round trip would not notice them pruned."""
    missing = []
    for name, field in type(model).model_fields.items():
        where = f"{path}.{field.alias or name}"
        value = getattr(model, name)
        if name not in model.model_fields_set or value is None or value == []:
            missing.append(where)
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                missing += unset_fields(item, where)
    return missing


def manifest(kind: type[Resource[Any, Any]], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind.kind_name,
        "metadata": {"name": name},
        "spec": copy.deepcopy(spec),
    }


Apply = Callable[..., dict[str, Any]]


@pytest.fixture
def apply(kubectl: Kubectl, namespace: str) -> Iterator[Apply]:
    """`apply(kind, spec)`: `kubectl apply -f -` a fresh object, read back as JSON.

    Cluster-scoped objects outlive the test's namespace, so they are deleted afterwards.
    """
    created: list[tuple[str, str]] = []

    def apply_(kind: type[Resource[Any, Any]], spec: dict[str, Any]) -> dict[str, Any]:
        name = f"{kind.kind_name.lower()}-{secrets.token_hex(3)}"
        body = manifest(kind, name, spec)
        where = ["-n", namespace] if kind.scope == "Namespaced" else []
        if kind.scope == "Cluster":
            created.append((kind.plural, name))
        kubectl("apply", *where, "-f", "-", input=json.dumps(body))
        read = kubectl("get", *where, kind.plural, name, "-o", "json").stdout
        result: dict[str, Any] = json.loads(read)
        return result

    yield apply_
    for plural, name in created:
        kubectl("delete", plural, name, "--ignore-not-found", "--wait=false")


def write_status(
    kube_api: client.ApiClient, kind: type[Resource[Any, Any]], obj: dict[str, Any], status: Any
) -> dict[str, Any]:
    """PUT the object's /status subresource as the operator does, and return what it stored."""
    custom = client.CustomObjectsApi(kube_api)
    body = {**obj, "status": copy.deepcopy(status)}
    name = obj["metadata"]["name"]
    stored: Any
    if kind.scope == "Namespaced":
        ns = obj["metadata"]["namespace"]
        stored = custom.replace_namespaced_custom_object_status(
            GROUP, VERSION, ns, kind.plural, name, body
        )
    else:
        stored = custom.replace_cluster_custom_object_status(
            GROUP, VERSION, kind.plural, name, body
        )
    return dict(stored)


@pytest.mark.parametrize(("kind", "spec", "status"), SAMPLES, ids=SAMPLE_IDS)
def test_samples_set_every_field(
    kind: type[Resource[Any, Any]], spec: dict[str, Any], status: dict[str, Any]
) -> None:
    """Guards the round trip below: a field added to a model must be added to its sample."""
    parsed = kind.model_validate({"metadata": {"name": "x"}, "spec": spec, "status": status})
    assert unset_fields(parsed.spec, "spec") == []
    assert parsed.status is not None
    assert unset_fields(parsed.status, "status") == []


@pytest.mark.parametrize(("kind", "spec", "status"), SAMPLES, ids=SAMPLE_IDS)
def test_every_field_round_trips_through_the_api_server(
    apply: Apply,
    kube_api: client.ApiClient,
    kind: type[Resource[Any, Any]],
    spec: dict[str, Any],
    status: dict[str, Any],
) -> None:
    stored = apply(kind, spec)
    assert stored["spec"] == spec
    assert kind.model_validate(stored).spec == kind.model_validate(manifest(kind, "x", spec)).spec

    with_status = write_status(kube_api, kind, stored, status)
    assert with_status["status"] == status
    assert with_status["spec"] == spec
    parsed = kind.model_validate(with_status)
    assert parsed.status is not None
    assert parsed.status.wire() == status


def test_server_defaults_agree_with_the_models(apply: Apply) -> None:
    minimal = {
        "source": {"git": {"url": "https://git.corp.com/myapp/api.git"}},
        "build": {"registryRef": {"name": "harbor"}, "repository": "myapp/api"},
        "domainPoolRef": {"name": "apps"},
        "environments": [{"name": "dev", "branch": "main"}],
    }
    stored = apply(Project, minimal)
    assert stored["spec"]["source"]["pollInterval"] == "5m"
    assert stored["spec"]["build"]["strategy"] == "auto"
    assert stored["spec"]["environments"][0]["autoSync"] is True
    from_server = Project.model_validate(stored).spec
    assert from_server == Project.model_validate(manifest(Project, "x", minimal)).spec


def rejected(kubectl: Kubectl, kind: type[Resource[Any, Any]], spec: dict[str, Any]) -> str:
    """Apply an object the schema must refuse; return kubectl's complaint."""
    body = manifest(kind, f"bad-{secrets.token_hex(3)}", spec)
    result = kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0, f"the API server accepted {json.dumps(body)}"
    return result.stderr


def project_with(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    spec = copy.deepcopy(PROJECT_SPEC)
    change(spec)
    return spec


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda s: s["source"]["git"].pop("url"), "spec.source.git.url: Required value"),
        (lambda s: s["environments"][0].pop("name"), "spec.environments.name: Required value"),
        (lambda s: s["environments"][1].pop("branch"), "spec.environments.branch: Required value"),
        (
            lambda s: s["source"].update(pollInterval="5 minutes"),
            'spec.source.pollInterval: Invalid value: "5 minutes"',
        ),
        (
            lambda s: s["previewEnvironments"].update(ttl="7 days"),
            'spec.previewEnvironments.ttl: Invalid value: "7 days"',
        ),
        (
            lambda s: s["build"].update(strategy="kaniko"),
            'spec.build.strategy: Unsupported value: "kaniko"',
        ),
        (
            lambda s: s["build"].update(context="services/../../etc"),
            'spec.build.context: Invalid value: "services/../../etc"',
        ),
        (
            lambda s: s["build"].update(dockerfile="/etc/passwd"),
            'spec.build.dockerfile: Invalid value: "/etc/passwd"',
        ),
        (
            lambda s: s["environments"][0].update(name="Dev_Env"),
            'spec.environments.name: Invalid value: "Dev_Env"',
        ),
        (lambda s: s["app"].update(port=0), "spec.app.port: Invalid value: 0"),
        (
            lambda s: s["source"]["git"].update(url="https://git.corp.com/" + "x" * 3000),
            "spec.source.git.url in body should be at most 2048 chars long",
        ),
        (
            lambda s: s["environments"].extend(
                {"name": f"e{i}", "branch": "main"} for i in range(20)
            ),
            "spec.environments in body should have at most 20 items",
        ),
        (
            lambda s: s["environments"][0].update(branch="b" * 300),
            "spec.environments.branch in body should be at most 255 chars long",
        ),
        (
            lambda s: s["previewEnvironments"].update(include=[f"p{i}/*" for i in range(51)]),
            "spec.previewEnvironments.include in body should have at most 50 items",
        ),
        (
            lambda s: s["app"].update(env=[{"name": "BIG", "value": "v" * 40000}]),
            "spec.app.env.value in body should be at most 32768 chars long",
        ),
        (lambda s: s["app"].update(replicas=101), "spec.app.replicas: Invalid value: 101"),
        (
            lambda s: s["source"]["git"]["secretRef"].update(namespace="Not/A-Namespace"),
            "spec.source.git.secretRef.namespace: Invalid value",
        ),
        (
            lambda s: s["app"]["resources"]["limits"].update(memory="1.5 GB"),
            'spec.app.resources.limits.memory: Invalid value: "1.5 GB"',
        ),
    ],
    ids=[
        "no-git-url",
        "environment-without-name",
        "environment-without-branch",
        "poll-interval-in-words",
        "ttl-with-a-space",
        "unknown-build-strategy",
        "context-out-of-the-repository",
        "dockerfile-absolute",
        "environment-name-not-a-dns-label",
        "port-zero",
        "url-too-long",
        "too-many-environments",
        "branch-too-long",
        "too-many-preview-patterns",
        "env-value-too-long",
        "replicas-over-the-cap",
        "secret-namespace-not-a-label",
        "memory-in-words",
    ],
)
def test_bad_projects_are_refused_naming_the_field(
    kubectl: Kubectl, change: Callable[[dict[str, Any]], object], complaint: str
) -> None:
    assert complaint in rejected(kubectl, Project, project_with(change))


@pytest.mark.parametrize("base_domain", ["Not_A_Domain", "-bad.com", "nodot", "apps.corp.com."])
def test_a_domain_pool_needs_a_real_base_domain(kubectl: Kubectl, base_domain: str) -> None:
    spec = {**DOMAIN_POOL_SPEC, "baseDomain": base_domain}
    assert f'spec.baseDomain: Invalid value: "{base_domain}"' in rejected(kubectl, DomainPool, spec)


def test_kubectl_explain_shows_the_model_descriptions(kubectl: Kubectl) -> None:
    explained = " ".join(kubectl("explain", "project.spec.source").stdout.split())
    assert "The Git repository and how it is watched." in explained
    assert "git <Object> -required- Where the code lives." in explained
    assert "How often Kapsa checks the branches for new commits" in explained


def test_kubectl_get_shows_phase_ready_commit_and_message_and_short_names_work(
    apply: Apply, kube_api: client.ApiClient, kubectl: Kubectl
) -> None:
    stored = apply(Project, PROJECT_SPEC)
    status = {
        "phase": "Running",
        "latestCommit": "def456e0c7a1b2c3d4e5",
        "shortCommit": "def456e0c7a1",
        "latestImage": "harbor.corp.com/myapp/api@sha256:" + "a" * 64,
        "namespace": "api",
        "conditions": CONDITIONS,
    }
    write_status(kube_api, Project, stored, status)
    name = stored["metadata"]["name"]

    header, row = kubectl("get", "projects", name).stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "READY", "COMMIT", "MESSAGE", "AGE"]
    assert row.split()[:4] == [name, "Running", "True", "def456e0c7a1"]
    assert "every environment answers" in row
    assert "sha256" not in row
    wide_header, wide_row = kubectl("get", "projects", name, "-o", "wide").stdout.splitlines()
    assert wide_header.split()[-2:] == ["NAMESPACE", "IMAGE"]
    assert wide_row.split()[-1] == status["latestImage"]
    assert kubectl("get", "kproj", name, "-o", "name").stdout.strip() == (f"project.{GROUP}/{name}")
    # The category: one command lists every kind of Kapsa object.
    assert f"project.{GROUP}/{name}" in kubectl("get", "kapsa", "-o", "name").stdout


def test_kubectl_get_environments_shows_type_branch_ready_commit_url_and_expiry(
    apply: Apply, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    stored = apply(Environment, ENVIRONMENT_SPEC)
    write_status(kube_api, Environment, stored, ENVIRONMENT_STATUS)

    header, row = kubectl("get", "-n", namespace, "kenv").stdout.splitlines()
    assert header.split() == [
        "NAME",
        "TYPE",
        "BRANCH",
        "PHASE",
        "READY",
        "COMMIT",
        "URL",
        "EXPIRES",
        "AGE",
    ]
    assert row.split()[1:8] == [
        "preview",
        "feature/new-api",
        "Deploying",
        "True",
        "abc123d",
        ENVIRONMENT_STATUS["url"],
        ENVIRONMENT_STATUS["expiresAt"],
    ]
    assert "sha256" not in row
    wide_header, wide_row = kubectl(
        "get", "-n", namespace, "kenv", "-o", "wide"
    ).stdout.splitlines()
    assert wide_header.split()[-2:] == ["MESSAGE", "IMAGE"]
    assert wide_row.split()[-1] == ENVIRONMENT_STATUS["image"]
