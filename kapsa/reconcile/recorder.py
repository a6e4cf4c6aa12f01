"""Recording a transition: the status first, then the ledger, then an Event.

Status carries the newest transition (`status.lastTransition`), so if the process dies between
the status write and the ledger append, the next reconcile of the object writes the missing row
from status before doing anything else. The ledger's (uid, seq) key makes every retry a no-op.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kapsa import metrics
from kapsa.faults import failpoint
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.resources import EVENT
from kapsa.ledger import Entry
from kapsa.machines import Transition
from kapsa.reconcile.context import Context, parse_time, rfc3339

log = logging.getLogger(__name__)


class LedgerCatchUp:
    """Remembers which objects' newest transitions are known to be in the ledger."""

    def __init__(self) -> None:
        self._written: dict[str, int] = {}
        self._lock = threading.Lock()

    def ensure(self, ctx: Context, obj: JSON, *, project: str) -> None:
        last = (obj.get("status") or {}).get("lastTransition")
        if not last:
            return
        uid = obj["metadata"]["uid"]
        with self._lock:
            if self._written.get(uid, 0) >= last["seq"]:
                return
        if ctx.ledger.last_seq(uid) < last["seq"]:
            ctx.ledger.append(entry_from_status(obj, last, project=project))
            log.info("ledger row %s of %s written from status", last["seq"], _name(obj))
        self.mark(uid, last["seq"])

    def mark(self, uid: str, seq: int) -> None:
        with self._lock:
            self._written[uid] = max(seq, self._written.get(uid, 0))


def last_transition(
    *, transition: Transition, seq: int, at: str, commit: str | None, image: str | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "seq": seq,
        "from": transition.source,
        "to": transition.dest,
        "trigger": transition.trigger,
        "reason": transition.reason,
        "message": transition.message,
        "at": at,
    }
    if commit:
        record["commit"] = commit
    if image:
        record["image"] = image
    return record


def entry_from_status(
    obj: JSON, last: dict[str, Any], *, project: str, source: str | None = None
) -> Entry:
    meta = obj["metadata"]
    at = parse_time(last["at"])
    assert at is not None
    return Entry(
        at=at,
        kind=obj["kind"],
        namespace=meta.get("namespace"),
        name=meta["name"],
        project=project,
        uid=meta["uid"],
        seq=int(last["seq"]),
        from_state=last["from"],
        to_state=last["to"],
        trigger=last["trigger"],
        reason=last.get("reason", ""),
        message=last.get("message", ""),
        commit=last.get("commit"),
        image=last.get("image"),
        generation=meta.get("generation"),
        source=source,
    )


def emit_event(ctx: Context, obj: JSON, *, reason: str, message: str, warning: bool) -> None:
    """A Kubernetes Event, so `kubectl describe` tells the story; best effort."""
    meta = obj["metadata"]
    # Events of cluster-scoped objects live in `default`, as kubectl describe looks for them.
    namespace = meta.get("namespace") or "default"
    stamp = rfc3339(ctx.now())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "kapsa"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        ctx.kube.create(EVENT, event)
    except ApiError as error:
        log.warning("could not record event for %s: %s", _name(obj), error)


def _name(obj: JSON) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{meta['name']}"


def write_status(
    ctx: Context,
    resource: Any,
    obj: JSON,
    status: JSON,
    *,
    transition: Transition | None,
    project: str,
    catch_up: LedgerCatchUp,
    commit: str | None = None,
    image: str | None = None,
    source: str | None = None,
) -> JSON | None:
    """Write `status` if it differs, with `transition` recorded in status, ledger and events.

    Returns the object as the server stored it, or None when nothing needed writing.
    """
    old = obj.get("status") or {}
    if transition is not None:
        seq = int((old.get("lastTransition") or {}).get("seq", 0)) + 1
        status["lastTransition"] = last_transition(
            transition=transition, seq=seq, at=rfc3339(ctx.now()), commit=commit, image=image
        )
    if status == old:
        return None
    body = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {
            "name": obj["metadata"]["name"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            **(
                {"namespace": obj["metadata"]["namespace"]}
                if obj["metadata"].get("namespace")
                else {}
            ),
        },
        "spec": obj["spec"],
        "status": status,
    }
    if transition is not None:
        failpoint("before-status")
    stored = ctx.kube.replace_status(resource, body)
    stored.setdefault("kind", obj["kind"])
    stored.setdefault("apiVersion", obj["apiVersion"])
    if transition is not None:
        last = status["lastTransition"]
        failpoint("after-status")
        ctx.ledger.append(entry_from_status(stored, last, project=project, source=source))
        failpoint("after-ledger")
        catch_up.mark(stored["metadata"]["uid"], last["seq"])
        metrics.count_transition(kind=obj["kind"], source=transition.source, dest=transition.dest)
        log.info(
            "%s: %s -> %s (%s) %s",
            _name(obj),
            transition.source,
            transition.dest,
            transition.reason,
            transition.message,
        )
        emit_event(
            ctx,
            stored,
            reason=transition.reason,
            message=f"{transition.source} -> {transition.dest}: {transition.message}",
            warning=transition.dest == "Failed",
        )
    return stored
