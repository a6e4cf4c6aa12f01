"""Kapsa's watch cache against the real API server: it follows every change, and it heals itself.

The operator reads Projects, Environments and their children from these caches instead of the
API server, so a cache that silently misses a deletion or stops after an API server restart would
leave the operator acting on objects that are gone. These tests hold it to the promise in
kapsa/k8s/informer.py: creates, updates and deletes arrive; a failing handler does not end the
watch; an API server restart with compacted history ends in a fresh list, by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import JSON, Kube
from kapsa.k8s.informer import Handler, Informer
from kapsa.k8s.resources import ResourceType
from tests.waiting import wait_until

CONFIG_MAP = ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True)


class Recorder:
    """Every event a handler is given, as (type, name, data), safe to read from the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, str, dict[str, str]]] = []

    def __call__(self, event: str, obj: JSON) -> None:
        with self._lock:
            self._events.append((event, obj["metadata"]["name"], dict(obj.get("data") or {})))

    def events(self) -> list[tuple[str, str, dict[str, str]]]:
        with self._lock:
            return list(self._events)

    def names(self) -> set[str]:
        return {name for _, name, _ in self.events()}

    def saw(self, event: str, name: str, data: dict[str, str] | None = None) -> bool:
        return any(
            e == event and n == name and (data is None or d == data) for e, n, d in self.events()
        )


@pytest.fixture
def kube(control_plane: ControlPlane) -> Kube:
    return Kube.from_kubeconfig(str(control_plane.kubeconfig))


@pytest.fixture
def informers() -> Iterator[list[Informer]]:
    """Informers a test starts; all stopped afterwards."""
    started: list[Informer] = []
    yield started
    for informer in started:
        informer.stop()


#: The controller manager publishes the cluster's CA as this ConfigMap in every namespace.
ROOT_CA = "kube-root-ca.crt"


def _names(informer: Informer, namespace: str | None = None) -> list[str]:
    """The cached ConfigMaps the tests made, in cache order."""
    return [
        o["metadata"]["name"]
        for o in informer.items(namespace=namespace)
        if o["metadata"]["name"] != ROOT_CA
    ]


def _config_map(name: str, namespace: str, value: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"key": value},
    }


def _cached(informer: Informer, name: str, namespace: str) -> dict[str, str] | None:
    obj = informer.get(name, namespace)
    return None if obj is None else dict(obj.get("data") or {})


def _start(
    kube: Kube, namespace: str, informers: list[Informer], *, on_event: Handler | None = None
) -> Informer:
    informer = Informer(kube, CONFIG_MAP, on_event=on_event, namespace=namespace)
    informers.append(informer)
    informer.start()
    assert informer.wait_synced(30), "the first list did not complete"
    return informer


def test_creates_updates_and_deletes_reach_the_cache_even_past_a_failing_handler(
    kube: Kube, namespace: str, informers: list[Informer]
) -> None:
    kube.create(CONFIG_MAP, _config_map("existing", namespace, "listed"))
    failures: list[str] = []

    def failing(_event: str, obj: JSON) -> None:
        failures.append(obj["metadata"]["name"])
        raise RuntimeError("a handler with a bug")

    informer = _start(kube, namespace, informers, on_event=failing)
    recorder = Recorder()
    informer.add_handler(recorder)
    # The first list fills the cache before wait_synced answers.
    assert _cached(informer, "existing", namespace) == {"key": "listed"}

    kube.create(CONFIG_MAP, _config_map("app", namespace, "v1"))
    wait_until(
        lambda: _cached(informer, "app", namespace) == {"key": "v1"},
        timeout=10,
        message="the created ConfigMap in the cache",
    )
    kube.merge_patch(CONFIG_MAP, "app", {"data": {"key": "v2"}}, namespace=namespace)
    wait_until(
        lambda: _cached(informer, "app", namespace) == {"key": "v2"},
        timeout=10,
        message="the updated ConfigMap in the cache",
    )
    assert kube.delete(CONFIG_MAP, "app", namespace=namespace)
    wait_until(
        lambda: informer.get("app", namespace) is None,
        timeout=10,
        message="the deleted ConfigMap gone from the cache",
    )
    wait_until(
        lambda: recorder.saw("DELETED", "app"),
        timeout=10,
        message=lambda: f"the DELETED event; events so far {recorder.events()}",
    )
    assert [e for e in recorder.events() if e[1] == "app"] == [
        ("ADDED", "app", {"key": "v1"}),
        ("MODIFIED", "app", {"key": "v2"}),
        ("DELETED", "app", {"key": "v2"}),
    ]
    # The first handler raised on every one of those events, and the watch went on regardless.
    assert failures.count("app") == 3
    assert _names(informer, namespace) == ["existing"]


def test_only_the_watched_namespace_is_cached(
    kube: Kube, namespace: str, informers: list[Informer]
) -> None:
    informer = _start(kube, namespace, informers)
    outside = f"{namespace}-outside"
    kube.create(CONFIG_MAP, _config_map(outside, "default", "elsewhere"))
    try:
        kube.create(CONFIG_MAP, _config_map("inside", namespace, "here"))
        wait_until(
            lambda: informer.get("inside", namespace),
            timeout=10,
            message="the ConfigMap of the watched namespace in the cache",
        )
        assert informer.get(outside, "default") is None
        assert {o["metadata"]["namespace"] for o in informer.items()} == {namespace}
    finally:
        kube.delete(CONFIG_MAP, outside, namespace="default")


def test_after_an_api_server_restart_and_compaction_a_relist_catches_up_by_itself(
    control_plane: ControlPlane, kube: Kube, namespace: str, informers: list[Informer]
) -> None:
    kube.create(CONFIG_MAP, _config_map("kept", namespace, "before"))
    kube.create(CONFIG_MAP, _config_map("doomed", namespace, "before"))
    # A handler that holds the watch thread on the event for "gate": from then on the informer
    # reads nothing, as if disconnected, while the test changes the cluster under it.
    holding = threading.Event()
    release = threading.Event()
    recorder = Recorder()

    def hold_on_gate(event: str, obj: JSON) -> None:
        recorder(event, obj)
        if obj["metadata"]["name"] == "gate" and not holding.is_set():
            holding.set()
            release.wait(60)

    informer = _start(kube, namespace, informers, on_event=hold_on_gate)
    assert set(_names(informer)) == {"kept", "doomed"}
    kube.create(CONFIG_MAP, _config_map("gate", namespace, "x"))
    wait_until(holding.is_set, timeout=10, message="the watch thread held on the gate event")
    try:
        control_plane.restart_apiserver()
        kube.create(CONFIG_MAP, _config_map("born", namespace, "while away"))
        kube.merge_patch(CONFIG_MAP, "kept", {"data": {"key": "while away"}}, namespace=namespace)
        assert kube.delete(CONFIG_MAP, "doomed", namespace=namespace)
        kube.create(CONFIG_MAP, _config_map("ephemeral", namespace, "x"))
        assert kube.delete(CONFIG_MAP, "ephemeral", namespace=namespace)
        # Nothing the informer last saw is left in history: a watch from there cannot resume.
        control_plane.compact_etcd()
        assert informer.relists == 0
        assert informer.get("doomed", namespace) is not None  # it has not looked yet
    finally:
        release.set()

    def caught_up() -> bool:
        return (
            _cached(informer, "born", namespace) == {"key": "while away"}
            and _cached(informer, "kept", namespace) == {"key": "while away"}
            and informer.get("doomed", namespace) is None
        )

    wait_until(
        caught_up,
        timeout=30,
        message=lambda: f"the cache caught up; it holds {sorted(_names(informer))}",
    )
    assert informer.relists >= 1
    assert set(_names(informer)) == {"kept", "gate", "born"}
    # The handlers hear of what changed while away, the deletion included; of an object that
    # came and went in between, nothing.
    assert recorder.saw("ADDED", "born", {"key": "while away"})
    assert recorder.saw("ADDED", "kept", {"key": "while away"})
    assert recorder.saw("DELETED", "doomed")
    assert "ephemeral" not in recorder.names()

    # And it watches again: a change made now arrives as an event, with no restart of it.
    kube.merge_patch(CONFIG_MAP, "gate", {"data": {"key": "after"}}, namespace=namespace)
    wait_until(
        lambda: recorder.saw("MODIFIED", "gate", {"key": "after"}),
        timeout=30,
        message=lambda: f"a live event after recovery; events {recorder.events()}",
    )
    assert _cached(informer, "gate", namespace) == {"key": "after"}
