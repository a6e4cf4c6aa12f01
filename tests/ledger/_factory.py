"""Entries as the reconciler would write them, with only what a test cares about spelled out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kapsa.ledger import Entry, Ledger

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def entry(**fields: Any) -> Entry:
    """An Environment `web-prod` of Project `web` moving Pending -> Building, unless overridden.

    Written where the operator writes it unless `namespace` is given: an Environment's row in
    its Project's namespace, a Project's row (cluster-scoped) with none.
    """
    project = fields.get("project", "web")
    kind = fields.get("kind", "Environment")
    fields.setdefault("namespace", None if kind == "Project" else project)
    base = Entry(
        at=T0,
        kind="Environment",
        namespace="web",
        name="web-prod",
        project="web",
        uid="uid-web-prod",
        seq=1,
        from_state="Pending",
        to_state="Building",
        trigger="build",
        reason="NewCommit",
        message="building the new head of main",
    )
    return replace(base, **fields)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


IMG1 = "registry.local/web@sha256:1111"
IMG2 = "registry.local/web@sha256:2222"


def append_web_history(ledger: Ledger) -> None:
    """Project `web`: created, Running on c1 at 10 min, on c2 at 30 min (a webhook), and a
    `web-staging` environment at 40 min: the history the CLI and HTTP tests read back."""
    ledger.append(entry(kind="Project", name="web", uid="uid-web", at=minutes(0)))
    ledger.append(entry(seq=1, to_state="Running", commit="c1" * 20, image=IMG1, at=minutes(10)))
    ledger.append(
        entry(
            seq=2,
            from_state="Running",
            to_state="Running",
            reason="NewImage",
            commit="c2" * 20,
            image=IMG2,
            at=minutes(30),
            source="webhook",
        )
    )
    ledger.append(entry(name="web-staging", uid="uid-staging", at=minutes(40)))


def append_forged_web_rows(ledger: Ledger) -> list[Entry]:
    """Rows an Environment in another team's namespace wrote while claiming Project `web`
    (`spec.project: web`), as the operator did before it refused such claims: running another
    image under web's name, and a `web-prod` of its own shadowing web's."""
    forged = [
        entry(namespace="team-b", name="web-prod", uid="uid-forged", seq=1, at=minutes(3)),
        entry(
            namespace="team-b",
            name="web-prod",
            uid="uid-forged",
            seq=2,
            to_state="Running",
            image="evil.example/x@sha256:6666",
            at=minutes(5),
        ),
        entry(namespace="team-b", name="sneaky", uid="uid-sneaky", at=minutes(6)),
        # An Environment row without a namespace can have come from no Environment.
        entry(namespace=None, name="web-prod", uid="uid-nowhere", at=minutes(7)),
        # A "Project" row for web from a namespace: Projects are cluster-scoped.
        entry(kind="Project", namespace="team-b", name="web", uid="uid-fake-web", at=minutes(8)),
    ]
    for row in forged:
        ledger.append(row)
    return forged
