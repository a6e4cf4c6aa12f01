"""The platform every flow test stands on: a verified Registry, a ready DomainPool, simulators."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import JSON, Kube
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.simulators import CertManagerSimulator, KpackSimulator, KubeletSimulator
from tests.e2e.harness import PLATFORM, OperatorProcess, get
from tests.waiting import wait_until


class BuildPolicy:
    """Which builds the kpack SIMULATOR fails: commits whose message carries `BUILD-FAILS: why`.

    Keyed on the commit itself, so a test states the failure when it pushes, with no race
    against the operator's poll.
    """

    MARKER = "BUILD-FAILS:"

    def __init__(self, git_server: GitServer) -> None:
        self.git_server = git_server

    def __call__(self, image: JSON) -> str | None:
        source = image["spec"]["source"]["git"]
        name = source["url"].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        message = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git_server.path_for(name)),
                "log",
                "-1",
                "--format=%B",
                source["revision"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if self.MARKER not in message:
            return None
        return message.split(self.MARKER, 1)[1].strip()


class ReadinessPolicy:
    """Which images the kubelet SIMULATOR never makes ready."""

    def __init__(self) -> None:
        self.never: set[str] = set()

    def __call__(self, deployment: JSON) -> bool:
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"] in self.never


@pytest.fixture(scope="session")
def build_policy(git_server: GitServer) -> BuildPolicy:
    return BuildPolicy(git_server)


@pytest.fixture(scope="session")
def readiness_policy() -> ReadinessPolicy:
    return ReadinessPolicy()


@dataclass
class Platform:
    kube: Kube
    kpack: KpackSimulator
    kubelet: KubeletSimulator


@pytest.fixture(scope="session")
def platform(
    control_plane: ControlPlane,
    registry_server: RegistryServer,
    build_policy: BuildPolicy,
    readiness_policy: ReadinessPolicy,
) -> Iterator[Platform]:
    """kapsa-system, the registry's push Secret and Registry, a ClusterIssuer and DomainPool,
    and the simulators standing in for kpack, the kubelet and cert-manager."""
    kube = Kube.from_kubeconfig(str(control_plane.kubeconfig))
    control_plane.kubectl("create", "namespace", "kapsa-system", check=False)
    control_plane.kubectl(
        "-n",
        "kapsa-system",
        "create",
        "secret",
        "docker-registry",
        "registry-push",
        f"--docker-server={registry_server.server}",
        f"--docker-username={registry_server.username}",
        f"--docker-password={registry_server.password}",
    )
    registry = (
        "apiVersion: kapsa.io/v1alpha1\nkind: Registry\nmetadata: {name: local}\nspec:\n"
        f"  server: {registry_server.server}\n  insecure: true\n"
        "  credentialsSecretRef: {name: registry-push, namespace: kapsa-system}\n"
    )
    control_plane.kubectl("apply", "-f", "-", input=PLATFORM + "---\n" + registry)
    kpack = KpackSimulator(kube, registry=registry_server, fail=build_policy)
    kubelet = KubeletSimulator(kube, never_ready=readiness_policy)
    simulators = [kpack.start(), kubelet.start(), CertManagerSimulator(kube).start()]
    yield Platform(kube=kube, kpack=kpack, kubelet=kubelet)
    for simulator in simulators:
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
        lambda: (get(control_plane, "registry", "local") or {}).get("status", {}).get("verified"),
        timeout=30,
        message=lambda: "Registry verified\n" + process.tail(),
    )
    yield process
    process.stop()
