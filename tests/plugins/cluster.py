"""The real control plane for the suite: one per session, a fresh namespace per test.

The session starts kube-apiserver, etcd, the controller manager with every controller, and one
real node (containerd, kubelet, kube-proxy, kube-scheduler in a network namespace of the run's
own) once, in about half a minute once the binaries are cached, and installs Kapsa's CRDs from
`crds/` plus the third-party kinds Kapsa drives (kpack Image, cert-manager ClusterIssuer), so
tests only ever create objects. Tests that use it are marked `cluster`, so
`pytest -m "not cluster"` runs without a control plane.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kapsa.controlplane import ControlPlane, find_or_build_assets
from kapsa.k8s.client import Kube

REPO = Path(__file__).resolve().parents[2]
KAPSA_CRDS = REPO / "crds"
#: The real upstream definitions, kept next to the checkout (see its SOURCES.md).
SHARED_THIRDPARTY = REPO.parent / "shared" / "thirdparty-crds"
SHARED_FILES = (
    "kpack/image.yaml",
    "cert-manager/crd-clusterissuers.yaml",
    "cert-manager/crd-issuers.yaml",
    "cert-manager/crd-certificates.yaml",
)
#: The project's own minimal definitions of the same kinds, for where the shared folder is absent.
OWN_THIRDPARTY = REPO / "tests" / "thirdparty"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def thirdparty_crd_files() -> list[Path]:
    if SHARED_THIRDPARTY.is_dir():
        return [SHARED_THIRDPARTY / name for name in SHARED_FILES]
    return sorted(OWN_THIRDPARTY.glob("*.yaml"))


def crd_names(files: list[Path]) -> list[str]:
    names = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                names.append(doc["metadata"]["name"])
    return names


def install_crds(control_plane: ControlPlane, files: list[Path]) -> None:
    """Apply the files and wait until every CRD in them is Established (served)."""
    if not files:
        return
    file_args = [arg for path in files for arg in ("-f", str(path))]
    # Server-side apply: cert-manager's CRDs are too big for kubectl's last-applied annotation.
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", *file_args)
    names = crd_names(files)
    if names:
        control_plane.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{name}" for name in names),
        )


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A started control plane with every CRD the suite needs installed."""
    plane = ControlPlane(
        assets=find_or_build_assets(),
        workdir=tmp_path_factory.mktemp("control-plane"),
        node=True,
    )
    with plane:
        install_crds(plane, sorted(KAPSA_CRDS.glob("kapsa.io_*.yaml")) + thirdparty_crd_files())
        yield plane


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    """`kubectl(*args, input=None, check=True)` against the control plane, the way users work."""
    return control_plane.kubectl


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards without waiting for it to go."""
    name = f"t-{secrets.token_hex(4)}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "control_plane" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def service_account_token(kube: Kube, namespace: str, account: str) -> str:
    """A token of a ServiceAccount for an hour, from the TokenRequest API."""
    answer = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])
