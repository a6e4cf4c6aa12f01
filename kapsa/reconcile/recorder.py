"""Recording a transition: the status first, then the ledger, then an Event.

Status carries the newest transition (`status.lastTransition`), so if the process dies between
the status write and the ledger append, the next reconcile of the object writes the missing row
from status before doing anything else. The ledger's (uid, seq) key makes every retry a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from http import HTTPStatus
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
    """A Kubernetes Event, so `kubectl describe` tells the story; best effort.

    A repeat (same object, type, reason and message) counts up the Event it repeats instead of
    adding another, as client-go's recorder does: `kubectl describe` then shows `(x4 over 10m)`
    and a flapping environment does not bury the rest. The Event's name is derived from what
    it says, so the count survives an operator restart and agrees between replicas.
    """
    meta = obj["metadata"]
    # The API server files Events of cluster-scoped objects (Projects, DomainPools,
    # Registries) under `default`, as it does for Nodes; `kubectl describe` finds them there.
    namespace = meta.get("namespace") or "default"
    type_ = "Warning" if warning else "Normal"
    text = message[:1024]
    key = hashlib.sha256(f"{meta['uid']}\n{type_}\n{reason}\n{text}".encode()).hexdigest()
    name = f"{meta['name']}.{key[:16]}"
    stamp = rfc3339(ctx.now())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
            "uid": meta["uid"],
        },
        "reason": reason,
        "message": text,
        "type": type_,
        "source": {"component": "kapsa"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        try:
            ctx.kube.create(EVENT, event)
            return
        except ApiError as error:
            if error.status != HTTPStatus.CONFLICT:
                raise
        seen = ctx.kube.get(EVENT, name, namespace=namespace) or {}
        count = int(seen.get("count") or 1) + 1
        ctx.kube.merge_patch(
            EVENT, name, {"count": count, "lastTimestamp": stamp}, namespace=namespace
        )
    except ApiError as error:
        log.warning("could not record event for %s: %s", _name(obj), error)


def _name(obj: JSON) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{meta['name']}"


#: The status field holding each kind's commit, shown shortened by `kubectl get`.
_COMMIT_FIELD = {"Project": "latestCommit", "Environment": "commit"}
#: As many hex digits as `kapsa history` prints: unambiguous in any repository one meets.
SHORT_COMMIT = 12


def _shorten_commit(kind: str, status: JSON) -> None:
    """status.shortCommit follows the full commit: a printer column cannot cut a string."""
    field = _COMMIT_FIELD.get(kind)
    if field is None:
        return
    full = status.get(field)
    if full:
        status["shortCommit"] = str(full)[:SHORT_COMMIT]
    else:
        status.pop("shortCommit", None)


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
    _shorten_commit(obj["kind"], status)
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
