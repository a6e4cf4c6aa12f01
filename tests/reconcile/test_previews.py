"""A preview that ran out its TTL stays gone until a newer commit, whatever the cache lags behind.

The Project reconciler reads the Project from a watch cache. A reconcile woken by the preview's
deletion may hold the Project from before the write that remembered the expired commit; if the
deletion had been sent before that write was read back, such a reconcile would create the preview
again for the commit that just expired.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kapsa.build import BuildResult
from kapsa.k8s.resources import ENVIRONMENT, KPACK_IMAGE
from kapsa.ledger import Ledger
from kapsa.machines import BuildState
from kapsa.reconcile.conditions import StatusDraft
from kapsa.reconcile.context import Caches, Context, Settings
from kapsa.reconcile.previews import PreviewReconciler
from kapsa.reconcile.sources import Snapshot

NOW = datetime(2026, 12, 2, tzinfo=UTC)
OLD, NEW = "a" * 40, "b" * 40


class Store:
    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.objects = list(items or [])

    def items(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for o in self.objects if namespace in (None, o["metadata"]["namespace"])]

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return next((o for o in self.items(namespace) if o["metadata"]["name"] == name), None)


@dataclass
class Kube:
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def delete(self, resource: Any, name: str, *, namespace: str) -> None:
        self.calls.append(("delete", resource.kind, name))

    def apply(self, resource: Any, manifest: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", resource.kind, manifest["metadata"]["name"]))
        return manifest


def _context(kube: Kube, ledger: Ledger, *environments: dict[str, Any]) -> Context:
    """The reconcilers' real Context over an API that records calls and caches of fixed objects."""
    informers = {ENVIRONMENT.plural: Store(list(environments)), KPACK_IMAGE.plural: Store()}
    return Context(
        kube=kube,  # type: ignore[arg-type]
        caches=Caches(informers=informers),  # type: ignore[arg-type]
        ledger=ledger,
        settings=Settings(),
        enqueue=lambda _key: None,
        enqueue_after=lambda _key, _delay: None,
        now=lambda: NOW,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A real, empty ledger: no earlier expiry recorded, so status alone decides."""
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()


class Builds:
    """Every commit's build has succeeded: the preview is decided by its expiry alone."""

    def build_request(self, _obj: Any, **request: Any) -> dict[str, Any]:
        return request

    def object_name(self, request: dict[str, Any]) -> str:
        return f"{request['branch_slug']}-image"

    def ensure_build(self, _obj: Any, *, request: dict[str, Any], **_: Any) -> BuildResult:
        return BuildResult(
            state=BuildState.SUCCEEDED,
            commit=request["commit"],
            image=f"registry/app@sha256:{request['commit']}",
        )


def _manifest(*, name: str, namespace: str, **_: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}}


PROJECT = {
    "metadata": {"name": "ttl", "uid": "u1"},
    "spec": {
        "environments": [{"name": "dev", "branch": "main"}],
        "previewEnvironments": {"enabled": True, "include": ["feature/*"], "ttl": "8s"},
    },
}


def _expiring_preview() -> dict[str, Any]:
    return {
        "metadata": {"name": "feature-short", "namespace": "ttl"},
        "spec": {"type": "preview", "branch": "feature/short", "project": "ttl"},
        "status": {
            "phase": "Expiring",
            "commit": OLD,
            "lastTransition": {"reason": "TTLExpired"},
        },
    }


def _reconcile(
    ctx: Context, kube: Kube, status: dict[str, Any], head: str
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    kube.calls.clear()
    draft = StatusDraft({**PROJECT, "status": status}, now="2026-12-02T00:00:00Z")
    PreviewReconciler(ctx, builds=Builds(), environment_manifest=_manifest).reconcile(  # type: ignore[arg-type]
        {**PROJECT, "status": status},
        draft,
        registry={},
        namespace="ttl",
        url="https://git.example.com/ttl.git",
        snapshot=Snapshot(heads={"main": OLD, "feature/short": head}, ok=True, listed_at=NOW),
        reserved={"dev"},
    )
    return list(kube.calls), draft.status


def test_the_expired_commit_is_stored_before_the_preview_is_deleted(ledger: Ledger) -> None:
    kube = Kube()
    ctx = _context(kube, ledger, _expiring_preview())
    before = {"previews": [{"name": "feature-short", "branch": "feature/short", "commit": OLD}]}

    calls, written = _reconcile(ctx, kube, before, OLD)
    assert calls == []  # nothing deleted while the mark is only in this reconcile's memory
    [entry] = written["previews"]
    assert entry["expiredCommit"] == OLD

    calls, after = _reconcile(ctx, kube, written, OLD)
    assert ("delete", "Environment", "feature-short") in calls
    assert after["previews"][0]["expiredCommit"] == OLD


def test_a_reconcile_after_the_deletion_brings_back_only_a_newer_commit(ledger: Ledger) -> None:
    kube = Kube()
    ctx = _context(kube, ledger)
    entry = {"name": "feature-short", "branch": "feature/short", "commit": OLD}
    marked = {"previews": [{**entry, "expiredCommit": OLD}]}

    calls, _ = _reconcile(ctx, kube, marked, OLD)
    assert not [c for c in calls if c[0] == "apply"]

    calls, written = _reconcile(ctx, kube, marked, NEW)
    assert ("apply", "Environment", "feature-short") in calls
    assert "expiredCommit" not in written["previews"][0]
