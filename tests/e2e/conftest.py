"""The platform every flow test stands on: a verified Registry, a ready DomainPool, simulators.

The same assembly as `kapsa sandbox` (kapsa.sandbox.stack), with the admin's objects from
deploy/examples pointed at the local registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import JSON, Kube
from kapsa.sandbox import stack
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.simulators import CommitMessageFailPolicy, KpackSimulator, KubeletSimulator
from tests.e2e.harness import REGISTRY, OperatorProcess, get, remove_all_projects
from tests.waiting import wait_until


@dataclass
class ReadinessPolicy:
    """Which images the kubelet SIMULATOR never makes ready."""

    never: set[str] = field(default_factory=set)

    def __call__(self, deployment: JSON) -> bool:
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"] in self.never


@dataclass
class Platform:
    kube: Kube
    kpack: KpackSimulator
    kubelet: KubeletSimulator
    names: stack.Platform


@pytest.fixture(scope="session")
def build_policy(git_server: GitServer) -> CommitMessageFailPolicy:
    return CommitMessageFailPolicy(git_server)


@pytest.fixture(scope="session")
def readiness_policy() -> ReadinessPolicy:
    return ReadinessPolicy()


@pytest.fixture(scope="session")
def platform(
    control_plane: ControlPlane,
    registry_server: RegistryServer,
    build_policy: CommitMessageFailPolicy,
    readiness_policy: ReadinessPolicy,
) -> Iterator[Platform]:
    """The admin's objects (deploy/examples, on the local registry) and the simulators."""
    names = stack.apply_platform(control_plane, registry_server)
    assert names.registry == REGISTRY
    kube = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    kpack, kubelet, cert_manager, jobs = stack.start_simulators(
        kube, registry_server=registry_server, fail=build_policy, never_ready=readiness_policy
    )
    yield Platform(kube=kube, kpack=kpack, kubelet=kubelet, names=names)
    for simulator in (kpack, kubelet, cert_manager, jobs):
        simulator.stop()


@pytest.fixture
def operator_ledger(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def operator(
    platform: Platform, control_plane: ControlPlane, operator_ledger: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=control_plane,
        ledger_url=operator_ledger,
        workdir=tmp_path,
        extra=["--no-leader-elect"],
    ).start()
    wait_until(
        lambda: (get(control_plane, "registry", REGISTRY) or {}).get("status", {}).get("verified"),
        timeout=30,
        message=lambda: "Registry verified\n" + process.tail(),
    )
    yield process
    remove_all_projects(control_plane, process)
    process.stop()
