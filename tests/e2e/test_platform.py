"""Flow 5 of the design, the platform admin's setup, through the real operator.

A DomainPool is usable once its ClusterIssuer is Ready, a Registry once Kapsa has logged in to
it; when not, the Ready condition's reason tells the admin what to fix, and fixing it is enough.
DomainPools and Registries are cluster-scoped, so every test names its own and deletes them.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import Kube
from kapsa.k8s.resources import CLUSTER_ISSUER
from kapsa.reconcile.platform import RECHECK_FAILED
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from tests.e2e.conftest import Platform
from tests.e2e.harness import SAMPLE_APP, OperatorProcess, condition, get, project_yaml
from tests.plugins.cluster import service_account_token
from tests.waiting import wait_until

POOL = "domainpools.kapsa.io"
REGISTRY = "registries.kapsa.io"
ISSUER = "clusterissuers.cert-manager.io"
NAMESPACE = "kapsa-system"
OPERATOR_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kapsa-operator.yaml"


@pytest.fixture
def created(control_plane: ControlPlane) -> Iterator[list[tuple[str, str]]]:
    """(kind, name) of the objects a test made; deleted after it."""
    objects: list[tuple[str, str]] = []
    yield objects
    for kind, name in reversed(objects):
        namespace = ["-n", NAMESPACE] if kind == "secret" else []
        control_plane.kubectl(
            *namespace, "delete", kind, name, "--ignore-not-found", "--wait=false"
        )


def _apply(control_plane: ControlPlane, text: str) -> None:
    control_plane.kubectl("apply", "-f", "-", input=textwrap.dedent(text))


def _pool(
    control_plane: ControlPlane, created: list[tuple[str, str]], name: str, issuer: str
) -> None:
    created.append((POOL, name))
    _apply(
        control_plane,
        f"""
        apiVersion: kapsa.io/v1alpha1
        kind: DomainPool
        metadata: {{name: {name}}}
        spec:
          baseDomain: {name}.corp.com
          clusterIssuerRef: {{name: {issuer}}}
        """,
    )


def _issuer(control_plane: ControlPlane, created: list[tuple[str, str]], name: str) -> None:
    created.append((ISSUER, name))
    _apply(
        control_plane,
        f"""
        apiVersion: cert-manager.io/v1
        kind: ClusterIssuer
        metadata: {{name: {name}}}
        spec: {{selfSigned: {{}}}}
        """,
    )


def _push_secret(
    control_plane: ControlPlane,
    created: list[tuple[str, str]],
    name: str,
    *,
    server: str,
    password: str,
) -> None:
    """What the admin's `kubectl create secret docker-registry` makes, created or replaced."""
    if ("secret", name) not in created:
        created.append(("secret", name))
    manifest = control_plane.kubectl(
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "docker-registry",
        name,
        f"--docker-server={server}",
        "--docker-username=kapsa",
        f"--docker-password={password}",
        "--dry-run=client",
        "-o",
        "yaml",
    ).stdout
    control_plane.kubectl("apply", "-f", "-", input=manifest)


def _registry(
    control_plane: ControlPlane,
    created: list[tuple[str, str]],
    name: str,
    *,
    server: str,
    secret: str,
    insecure: bool,
) -> None:
    created.append((REGISTRY, name))
    _apply(
        control_plane,
        f"""
        apiVersion: kapsa.io/v1alpha1
        kind: Registry
        metadata: {{name: {name}}}
        spec:
          server: "{server}"
          insecure: {str(insecure).lower()}
          credentialsSecretRef: {{name: {secret}, namespace: {NAMESPACE}}}
        """,
    )


def _ready(control_plane: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    return condition(get(control_plane, kind, name), "Ready")


def _await_ready(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    kind: str,
    name: str,
    *,
    status: str,
    reason: str,
    timeout: float = 30,
) -> dict[str, Any]:

    def reached() -> dict[str, Any] | None:
        found = _ready(control_plane, kind, name)
        return found if (found.get("status"), found.get("reason")) == (status, reason) else None

    reached_condition = wait_until(
        reached,
        timeout=timeout,
        message=lambda: (
            f"{kind} {name} Ready={status} {reason}, has "
            f"{_ready(control_plane, kind, name)}\n{operator.tail()}"
        ),
    )
    assert reached_condition is not None
    return reached_condition


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_domainpool_waits_for_its_issuer_and_turns_ready_when_it_appears(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    created: list[tuple[str, str]],
) -> None:
    _pool(control_plane, created, "t5-early", issuer="t5-issued-later")
    missing = _await_ready(
        control_plane, operator, POOL, "t5-early", status="False", reason="IssuerNotFound"
    )
    assert "t5-issued-later" in missing["message"]

    _issuer(control_plane, created, "t5-issued-later")  # the cert-manager SIMULATOR readies it
    _await_ready(control_plane, operator, POOL, "t5-early", status="True", reason="IssuerReady")


def test_domainpool_follows_its_issuers_readiness(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    platform: Platform,
    created: list[tuple[str, str]],
) -> None:
    _issuer(control_plane, created, "t5-acme-down")
    generation = get(control_plane, ISSUER, "t5-acme-down")["metadata"]["generation"]

    def report(status: str, reason: str, message: str) -> None:
        """What cert-manager writes; current for this generation, so the SIMULATOR keeps out."""
        platform.kube.merge_patch(
            CLUSTER_ISSUER,
            "t5-acme-down",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": status,
                            "reason": reason,
                            "message": message,
                            "observedGeneration": generation,
                        }
                    ]
                }
            },
            subresource="status",
        )

    report("False", "ErrRegisterACMEAccount", "Failed to register ACME account: 503")
    wait_until(
        lambda: _ready(control_plane, ISSUER, "t5-acme-down").get("status") == "False",
        timeout=10,
        message="the issuer reported not Ready",
    )
    _pool(control_plane, created, "t5-unready", issuer="t5-acme-down")
    not_ready = _await_ready(
        control_plane, operator, POOL, "t5-unready", status="False", reason="IssuerNotReady"
    )
    assert "Failed to register ACME account: 503" in not_ready["message"]

    report("True", "ACMEAccountRegistered", "The ACME account was registered")
    _await_ready(control_plane, operator, POOL, "t5-unready", status="True", reason="IssuerReady")


def test_registry_that_cannot_be_logged_in_to_says_why(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    registry_server: RegistryServer,
    tls_registry_server: RegistryServer,
    created: list[tuple[str, str]],
) -> None:
    plain, tls = registry_server, tls_registry_server
    _push_secret(
        control_plane, created, "t5-plain-wrong", server=plain.server, password="not-the-password"
    )
    _push_secret(
        control_plane, created, "t5-plain-right", server=plain.server, password=plain.password
    )
    _push_secret(control_plane, created, "t5-tls-right", server=tls.server, password=tls.password)
    down = f"127.0.0.1:{_unused_port()}"
    _push_secret(control_plane, created, "t5-down", server=down, password="anything")
    cases = {
        # name: (server, Secret, insecure) -> the reason the admin reads
        "t5-wrong-password": ((plain.server, "t5-plain-wrong", True), "AuthenticationFailed"),
        "t5-missing-secret": ((plain.server, "t5-no-such-secret", True), "InvalidSecret"),
        "t5-secret-for-another-host": ((tls.server, "t5-plain-right", False), "InvalidSecret"),
        "t5-server-down": ((down, "t5-down", True), "Unreachable"),
        "t5-plain-http-not-insecure": ((plain.server, "t5-plain-right", False), "Unreachable"),
        # The operator was not given this registry's private CA.
        "t5-untrusted-certificate": ((tls.server, "t5-tls-right", False), "Unreachable"),
    }
    for name, ((server, secret, insecure), _reason) in cases.items():
        _registry(control_plane, created, name, server=server, secret=secret, insecure=insecure)

    for name, (_spec, reason) in cases.items():
        _await_ready(control_plane, operator, REGISTRY, name, status="False", reason=reason)
        registry = get(control_plane, REGISTRY, name)
        assert registry["status"]["verified"] is False, name
        assert registry["status"]["lastVerifiedTime"], name


def test_fixing_the_secret_verifies_the_registry_without_touching_it(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    registry_server: RegistryServer,
    created: list[tuple[str, str]],
) -> None:
    server = registry_server.server
    _push_secret(control_plane, created, "t5-fixable", server=server, password="a-typo")
    _registry(
        control_plane, created, "t5-fixable", server=server, secret="t5-fixable", insecure=True
    )
    _await_ready(
        control_plane,
        operator,
        REGISTRY,
        "t5-fixable",
        status="False",
        reason="AuthenticationFailed",
    )

    _push_secret(
        control_plane, created, "t5-fixable", server=server, password=registry_server.password
    )
    # Sooner than the periodic re-check of a failed Registry: Kapsa watches its own Secrets.
    verified = _await_ready(
        control_plane,
        operator,
        REGISTRY,
        "t5-fixable",
        status="True",
        reason="Verified",
        timeout=RECHECK_FAILED / 2,
    )
    assert "as kapsa" in verified["message"]
    assert get(control_plane, REGISTRY, "t5-fixable")["status"]["verified"] is True


def test_https_registry_with_a_private_ca_is_verified(
    control_plane: ControlPlane,
    platform: Platform,
    tls_registry_server: RegistryServer,
    created: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    """The flow as drawn: Secret, Registry, and Kapsa logs in over HTTPS."""
    assert tls_registry_server.ca_bundle is not None
    operator = OperatorProcess(
        control_plane=control_plane,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        workdir=tmp_path,
        extra=["--no-leader-elect", "--registry-ca-bundle", tls_registry_server.ca_bundle],
    ).start()
    try:
        _push_secret(
            control_plane,
            created,
            "t5-harbor",
            server=tls_registry_server.server,
            password=tls_registry_server.password,
        )
        _registry(
            control_plane,
            created,
            "t5-harbor",
            server=tls_registry_server.server,
            secret="t5-harbor",
            insecure=False,
        )
        ready = _await_ready(
            control_plane, operator, REGISTRY, "t5-harbor", status="True", reason="Verified"
        )
    finally:
        operator.stop()
    assert f"https://{tls_registry_server.server}" in ready["message"]
    assert get(control_plane, REGISTRY, "t5-harbor")["status"]["verified"] is True


def _service_account_kubeconfig(control_plane: ControlPlane, kube: Kube, path: Path) -> Path:
    """The admin's kubeconfig with the credentials swapped for a token of Kapsa's account."""
    token = service_account_token(kube, NAMESPACE, "kapsa")
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_operator_does_its_work_with_only_the_rights_the_install_gives_it(
    control_plane: ControlPlane,
    platform: Platform,
    git_server: GitServer,
    created: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    """Flow 5's first step, then flow 1 run by an operator holding nothing but those rights."""
    control_plane.kubectl("apply", "-f", str(OPERATOR_MANIFEST))
    kubeconfig = _service_account_kubeconfig(control_plane, platform.kube, tmp_path / "kapsa.conf")
    operator = OperatorProcess(
        control_plane=control_plane,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        workdir=tmp_path,
        # The last --kubeconfig wins: the service account's, with leader election on.
        extra=["--kubeconfig", str(kubeconfig)],
    ).start()
    name = "t5-least-rights"
    git_server.create_repo(name, files=SAMPLE_APP)
    try:
        created.append(("project", name))
        control_plane.kubectl(
            "apply",
            "-f",
            "-",
            input=project_yaml(
                name=name,
                url=git_server.url_for(name),
                environments=[{"name": "dev", "branch": "main", "autoSync": True}],
            ),
        )
        wait_until(
            lambda: (
                (get(control_plane, "project", name) or {}).get("status", {}).get("phase")
                == "Running"
            ),
            timeout=60,
            message=lambda: f"Project {name} Running\n{operator.tail()}",
        )
        lease = get(control_plane, "-n", NAMESPACE, "lease", "kapsa-operator")
        assert lease["spec"]["holderIdentity"]
        control_plane.kubectl("delete", "project", name, "--wait=false")
        wait_until(
            lambda: get(control_plane, "project", name) is None,
            timeout=30,
            message=lambda: f"Project {name} finalized\n{operator.tail()}",
        )
    finally:
        operator.stop()
    refused = f'User "system:serviceaccount:{NAMESPACE}:kapsa" cannot'
    assert refused not in operator.log.read_text(), operator.tail()
