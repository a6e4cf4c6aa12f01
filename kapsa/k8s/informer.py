"""Watch caches: list once, then watch, so reconciles read memory instead of the API server.

What makes this safe for a long-running operator:
- 410 Gone (history compacted): list again and resume from the new list's resourceVersion;
- silent connections: bookmarks keep the resourceVersion fresh, and a client-side read timeout
  ends a watch that went quiet, after which it is re-opened;
- an API server restart: connection errors back off and retry forever; the periodic resync of the
  operator is the backstop for anything missed in between.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kapsa.k8s.client import JSON, ApiError, GoneError, Kube
from kapsa.k8s.resources import ResourceType

log = logging.getLogger(__name__)

Handler = Callable[[str, JSON], None]
Key = tuple[str, str]  # (namespace or "", name)

WATCH_SECONDS = 240
#: A watch with no event or bookmark for this long is presumed dead and re-opened.
INACTIVITY_SECONDS = 90.0


def key_of(obj: JSON) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class Informer:
    """One resource type's objects, kept current by a watch in a daemon thread."""

    def __init__(
        self,
        kube: Kube,
        resource: ResourceType,
        *,
        on_event: Handler | None = None,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        #: Watch one namespace only (Kapsa's own Secrets: no cluster-wide Secret access).
        self.namespace = namespace
        self._handlers: list[Handler] = [on_event] if on_event else []
        self._label_selector = label_selector
        self._store: dict[Key, JSON] = {}
        #: The same objects by namespace, so a reconcile reads one namespace without a scan.
        self._by_namespace: dict[str, dict[str, JSON]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Relists after a 410, for tests and metrics.
        self.relists = 0

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> JSON | None:
        with self._lock:
            return self._store.get((namespace or "", name))

    def items(self, *, namespace: str | None = None) -> list[JSON]:
        with self._lock:
            if namespace is None:
                return list(self._store.values())
            return list(self._by_namespace.get(namespace, {}).values())

    def wait_synced(self, timeout: float = 30.0) -> bool:
        return self._synced.wait(timeout)

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{self.resource.plural}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _emit(self, event_type: str, obj: JSON) -> None:
        for handler in self._handlers:
            try:
                handler(event_type, obj)
            except Exception:  # a handler's bug must not kill the watch
                log.exception("watch handler failed for %s", self.resource.plural)

    def _list(self) -> str:
        listing = self.kube.list(
            self.resource, namespace=self.namespace, label_selector=self._label_selector
        )
        fresh = {key_of(o): _with_kind(o, self.resource) for o in listing.get("items", [])}
        with self._lock:
            gone = [self._store[k] for k in self._store.keys() - fresh.keys()]
            changed = [o for k, o in fresh.items() if _rv(self._store.get(k)) != _rv(o)]
            self._store = fresh
            self._by_namespace = {}
            for (namespace, name), obj in fresh.items():
                self._by_namespace.setdefault(namespace, {})[name] = obj
        self._synced.set()
        for obj in gone:
            self._emit("DELETED", obj)
        for obj in changed:
            self._emit("ADDED", obj)
        return str(listing["metadata"].get("resourceVersion", ""))

    def _run(self) -> None:
        backoff = 0.2
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                backoff = 0.2
            except GoneError:
                self.relists += 1
                version = None
            except ApiError as error:
                log.info("watch of %s interrupted: %s", self.resource.plural, error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                if error.status != 0:
                    version = None
            except Exception:
                log.exception("watch of %s failed", self.resource.plural)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                version = None

    def _watch(self, version: str) -> str:
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        if self._label_selector:
            query["labelSelector"] = self._label_selector
        for event in self.kube.stream(
            self.resource.path(namespace=self.namespace), query=query, timeout=INACTIVITY_SECONDS
        ):
            if self._stop.is_set():
                break
            kind = event.get("type")
            obj = event.get("object", {})
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise GoneError(status=410, reason="Expired", message=obj.get("message", ""))
                raise ApiError(
                    status=int(obj.get("code", 500)),
                    reason=str(obj.get("reason", "")),
                    message=str(obj.get("message", "")),
                )
            version = str(obj.get("metadata", {}).get("resourceVersion", version))
            if kind == "BOOKMARK":
                continue
            obj = _with_kind(obj, self.resource)
            key = key_of(obj)
            with self._lock:
                if kind == "DELETED":
                    self._store.pop(key, None)
                    self._by_namespace.get(key[0], {}).pop(key[1], None)
                else:
                    self._store[key] = obj
                    self._by_namespace.setdefault(key[0], {})[key[1]] = obj
            self._emit(str(kind), obj)
        return version


def _rv(obj: JSON | None) -> Any:
    return obj["metadata"].get("resourceVersion") if obj else None


def _with_kind(obj: JSON, resource: ResourceType) -> JSON:
    # Server-side apply's bookkeeping is ~40 % of an object and Kapsa never reads it.
    obj.get("metadata", {}).pop("managedFields", None)
    obj.setdefault("kind", resource.kind)
    obj.setdefault("apiVersion", resource.api_version)
    return obj
