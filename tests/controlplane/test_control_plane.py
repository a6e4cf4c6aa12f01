"""The local control plane behaves like the parts of a real cluster Kapsa relies on."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kapsa.controlplane import Assets, ControlPlane
from kapsa.errors import ControlPlaneError
from tests.plugins.cluster import Kubectl
from tests.waiting import wait_until

GROUP = "test.kapsa.dev"


def gone(read: Callable[[], object]) -> bool:
    """True once `read()` answers 404."""
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def config_map(name: str, **meta: object) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, **meta), data={"key": "value"}
    )


def test_admin_token_is_served_and_a_wrong_token_refused(
    kube_api: client.ApiClient, kubectl: Kubectl
) -> None:
    assert client.VersionApi(kube_api).get_code().major == "1"
    names = {ns.metadata.name for ns in client.CoreV1Api(kube_api).list_namespace().items}
    assert {"default", "kube-system"} <= names
    assert kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == (
        "namespace/default"
    )

    stranger = copy.deepcopy(kube_api.configuration)
    stranger.refresh_api_key_hook = None  # it would put the admin token back
    stranger.api_key = {"authorization": "Bearer not-the-token"}
    with client.ApiClient(stranger) as api, pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).list_namespace()
    assert refused.value.status == 401


def test_third_party_kinds_are_installed(kube_api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    image = custom.create_namespaced_custom_object(
        "kpack.io",
        "v1alpha2",
        namespace,
        "images",
        {
            "apiVersion": "kpack.io/v1alpha2",
            "kind": "Image",
            "metadata": {"name": "app"},
            "spec": {"tag": "registry.local/app", "anything": {"kept": True}},
        },
    )
    assert image["spec"]["anything"] == {"kept": True}
    issuer_name = f"t-{secrets.token_hex(4)}"
    custom.create_cluster_custom_object(
        "cert-manager.io",
        "v1",
        "clusterissuers",
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": issuer_name},
            "spec": {"selfSigned": {}},
        },
    )
    custom.delete_cluster_custom_object("cert-manager.io", "v1", "clusterissuers", issuer_name)


@pytest.fixture
def widget_crd(kube_api: client.ApiClient) -> Iterator[str]:
    """A namespaced kind with a structural schema and a status subresource."""
    extensions = client.ApiextensionsV1Api(kube_api)
    name = f"widgets.{GROUP}"
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        },
    }
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": schema},
                        "subresources": {"status": {}},
                    }
                ],
            },
        }
    )

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        conditions = crd.status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until(established, timeout=30, message=f"{name} to be Established")
    yield name
    extensions.delete_custom_resource_definition(name)


def test_custom_resource_round_trips_with_pruning_status_and_generation(
    kube_api: client.ApiClient, namespace: str, widget_crd: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    args = (GROUP, "v1", namespace, "widgets", "w")
    created = custom.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": 3, "unknown": "pruned"},
            "status": {"phase": "ignored on create"},
        },
    )
    assert created["spec"] == {"size": 3}
    assert "status" not in created
    assert created["metadata"]["generation"] == 1

    custom.patch_namespaced_custom_object_status(*args, {"status": {"phase": "Ready"}})
    after_status = custom.get_namespaced_custom_object(*args)
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["metadata"]["generation"] == 1

    custom.patch_namespaced_custom_object(*args, {"spec": {"size": 4}})
    after_spec = custom.get_namespaced_custom_object(*args)
    assert after_spec["spec"] == {"size": 4}
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["status"] == {"phase": "Ready"}


def test_garbage_collector_deletes_what_an_owner_leaves(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, config_map("owner"))
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(namespace, config_map("owned", owner_references=[reference]))
    core.create_namespaced_config_map(namespace, config_map("bystander"))

    core.delete_namespaced_config_map("owner", namespace)

    wait_until(
        lambda: gone(lambda: core.read_namespaced_config_map("owned", namespace)),
        timeout=30,
        message="the owned ConfigMap to be collected",
    )
    assert core.read_namespaced_config_map("bystander", namespace).data == {"key": "value"}


def test_namespace_deletion_completes(kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    name = f"t-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, config_map("inside"))

    core.delete_namespace(name)

    wait_until(
        lambda: gone(lambda: core.read_namespace(name)),
        timeout=60,
        message=f"namespace {name} to be deleted",
    )


def test_restarted_apiserver_keeps_data_and_clients_reconnect(
    control_plane: ControlPlane, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    created = core.create_namespaced_config_map(namespace, config_map("before"))
    core.patch_namespaced_config_map("before", namespace, {"data": {"key": "kept"}})

    control_plane.restart_apiserver()

    assert core.read_namespaced_config_map("before", namespace).data == {"key": "kept"}
    # The new apiserver's watch cache starts now: a watch resuming from before is told 410 Gone,
    # the signal a watch loop must answer by listing afresh.
    with pytest.raises(ApiException) as expired:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=created.metadata.resource_version,
            timeout_seconds=5,
        ):
            pass
    assert expired.value.status == 410
    core.create_namespaced_config_map(namespace, config_map("after"))
    listed = kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout.split()
    assert {"configmap/before", "configmap/after"} <= set(listed)


def test_compacted_etcd_answers_410_for_older_resource_versions(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    version = core.create_namespaced_config_map(namespace, config_map("old")).metadata
    core.patch_namespaced_config_map("old", namespace, {"data": {"key": "newer"}})

    def list_at_old_version() -> client.V1ConfigMapList:
        return core.list_namespaced_config_map(
            namespace,
            resource_version=version.resource_version,
            resource_version_match="Exact",
        )

    old = [cm.data for cm in list_at_old_version().items if cm.metadata.name == "old"]
    assert old == [{"key": "value"}]

    control_plane.compact_etcd()

    with pytest.raises(ApiException) as expired:
        list_at_old_version()
    assert expired.value.status == 410


def test_failed_start_names_the_log_and_shows_its_tail(tmp_path: Path) -> None:
    broken = tmp_path / "etcd"
    broken.write_text("#!/bin/sh\necho 'etcd: cannot open the data dir' >&2\nexit 3\n")
    broken.chmod(0o755)
    assets = Assets(etcd=broken, kube_apiserver=broken, kube_controller_manager=None, kubectl=None)
    plane = ControlPlane(assets=assets, workdir=tmp_path / "plane")

    with pytest.raises(ControlPlaneError) as failed:
        plane.start()

    message = str(failed.value)
    assert str(tmp_path / "plane" / "logs" / "etcd.log") in message
    assert "cannot open the data dir" in message
