"""Kapsa's Events, as `kubectl describe` and `kubectl get events` show them."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from kapsa.controlplane import ControlPlane
from kapsa.k8s.client import Kube
from kapsa.reconcile.recorder import emit_event


def _events(control_plane: ControlPlane, namespace: str, uid: str) -> list[dict[str, Any]]:
    listed = json.loads(
        control_plane.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.uid={uid}",
            "-o",
            "json",
        ).stdout
    )
    return list(listed["items"])


def _emitter(control_plane: ControlPlane) -> tuple[SimpleNamespace, list[datetime]]:
    clock = [datetime(2026, 11, 27, 10, 0, tzinfo=UTC)]
    ctx = SimpleNamespace(
        kube=Kube.from_kubeconfig(str(control_plane.kubeconfig)), now=lambda: clock[0]
    )
    return ctx, clock


def test_a_repeated_event_counts_up_instead_of_piling_up(
    control_plane: ControlPlane, namespace: str
) -> None:
    ctx, clock = _emitter(control_plane)
    uid = secrets.token_hex(8)
    env = {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": "dev", "namespace": namespace, "uid": uid},
    }

    for minute in range(3):
        clock[0] = datetime(2026, 11, 27, 10, minute, tzinfo=UTC)
        emit_event(ctx, env, reason="BuildFailed", message="npm install failed", warning=True)
    emit_event(ctx, env, reason="Ready", message="serves abc123 at https://dev", warning=False)

    events = sorted(_events(control_plane, namespace, uid), key=lambda e: e["reason"])
    assert [(e["reason"], e["type"], e["count"]) for e in events] == [
        ("BuildFailed", "Warning", 3),
        ("Ready", "Normal", 1),
    ]
    failed = events[0]
    assert failed["firstTimestamp"] == "2026-11-27T10:00:00Z"
    assert failed["lastTimestamp"] == "2026-11-27T10:02:00Z"
    described = control_plane.kubectl(
        "describe", "events", "-n", namespace, failed["metadata"]["name"]
    )
    assert "npm install failed" in described.stdout


def test_events_of_a_cluster_scoped_project_are_filed_under_default(
    control_plane: ControlPlane,
) -> None:
    ctx, clock = _emitter(control_plane)
    clock[0] += timedelta(days=1)
    uid = secrets.token_hex(8)
    project = {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Project",
        "metadata": {"name": f"p-{uid[:6]}", "uid": uid},
    }

    emit_event(ctx, project, reason="BuildFailed", message="no buildpack applies", warning=True)

    (event,) = _events(control_plane, "default", uid)
    assert event["involvedObject"]["kind"] == "Project"
    assert event["message"] == "no buildpack applies"
