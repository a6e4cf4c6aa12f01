"""The platform every flow test stands on: a verified Registry, a ready DomainPool, SIMULATORS.

The same assembly as `kapsa sandbox` (kapsa.sandbox.stack), with the admin's objects from
deploy/examples pointed at the local registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import Kube
from kapsa.sandbox import stack
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.simulators import CommitMessageFailPolicy, KpackSimulator
from tests.e2e.harness import REGISTRY, OperatorProcess, get, remove_all_projects
from tests.waiting import wait_until


@dataclass
class Platform:
    kube: Kube
    kpack: KpackSimulator
    names: stack.Platform
    images: stack.BuildImages


@pytest.fixture(scope="session")
def build_policy(git_server: GitServer) -> CommitMessageFailPolicy:
    return CommitMessageFailPolicy(git_server)


@pytest.fixture(scope="session")
def platform(
    control_plane: ControlPlane,
    registry_server: RegistryServer,
    git_server: GitServer,
    build_policy: CommitMessageFailPolicy,
) -> Iterator[Platform]:
    """The admin's objects (deploy/examples, on the local registry) and the SIMULATORS.

    The node pulls from the local registry with the pods' pull secrets, as a cluster would.
    """
    names = stack.apply_platform(control_plane, registry_server)
    assert names.registry == REGISTRY
    assert control_plane.node is not None
    control_plane.node.trust_registry(port=registry_server.port, tls=registry_server.tls)
    # Dockerfile builds run on the node, sharing its network, where these ports answer too.
    assert git_server.port is not None
    control_plane.node.expose(git_server.port)
    images = stack.push_build_images(registry_server)
    # The builder image is the platform's: every node may pull it, whatever a Project's Registry
    # (only it: the kubelet matches this path, so apps still pull with their own secret).
    control_plane.node.pull_credentials(
        server=f"{registry_server.server}/kapsa/builder",
        username=registry_server.username,
        password=registry_server.password,
    )
    kube = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    simulators = stack.start_simulators(
        kube, registry_server=registry_server, git_server=git_server, node=True, fail=build_policy
    )
    with pytest.MonkeyPatch.context() as env:
        # Every operator a test starts (`kapsa operator`) reads these, as a Deployment's would.
        env.setenv("KAPSA_BUILDER_IMAGE", images.builder)
        env.setenv("KAPSA_BUILD_HOST_NETWORK", "true")
        yield Platform(kube=kube, kpack=simulators.kpack, names=names, images=images)
    simulators.stop()


@pytest.fixture
def operator_ledger(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def operator_flags() -> list[str]:
    """Flags of `kapsa operator` beyond the harness's; a test module overrides this fixture."""
    return []


@pytest.fixture
def operator(
    platform: Platform,
    control_plane: ControlPlane,
    operator_ledger: str,
    tmp_path: Path,
    operator_flags: list[str],
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=control_plane,
        ledger_url=operator_ledger,
        workdir=tmp_path,
        extra=["--no-leader-elect", *operator_flags],
    ).start()
    wait_until(
        lambda: (get(control_plane, "registry", REGISTRY) or {}).get("status", {}).get("verified"),
        timeout=30,
        message=lambda: "Registry verified\n" + process.tail(),
    )
    yield process
    remove_all_projects(control_plane, process)
    process.stop()


@pytest.fixture
def untrusted_registry(
    control_plane: ControlPlane,
    tls_registry_server: RegistryServer,
    platform: Platform,
) -> Iterator[str]:
    """A Registry whose CA the operator and the builder trust but the node does not."""
    tls = tls_registry_server
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "create",
        "secret",
        "docker-registry",
        "private-ca-push",
        f"--docker-server={tls.server}",
        f"--docker-username={tls.username}",
        f"--docker-password={tls.password}",
    )
    control_plane.kubectl(
        "apply",
        "-f",
        "-",
        input=f"""
apiVersion: kapsa.io/v1alpha1
kind: Registry
metadata: {{name: private-ca}}
spec:
  server: "{tls.server}"
  credentialsSecretRef: {{name: private-ca-push, namespace: kapsa-system}}
""",
    )
    platform.kpack.registries[tls.server] = tls
    assert control_plane.node is not None
    control_plane.node.expose(tls.port)  # reachable, but its certificate is not trusted
    yield "private-ca"
    del platform.kpack.registries[tls.server]
    control_plane.kubectl("delete", "registry", "private-ca")
    control_plane.kubectl("-n", "kapsa-system", "delete", "secret", "private-ca-push")


@pytest.fixture
def ca_trusting_operator(
    control_plane: ControlPlane,
    tls_registry_server: RegistryServer,
    untrusted_registry: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """An operator started with --registry-ca-bundle of the TLS registry (`untrusted_registry`,
    whose CA the node does not trust)."""
    assert tls_registry_server.ca_bundle is not None
    process = OperatorProcess(
        control_plane=control_plane,
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        workdir=tmp_path,
        extra=["--no-leader-elect", "--registry-ca-bundle", tls_registry_server.ca_bundle],
    ).start()
    yield process
    remove_all_projects(control_plane, process)
    process.stop()
