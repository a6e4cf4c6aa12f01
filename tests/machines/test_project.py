"""Every Project transition and guard, one row each: what a user sees in status.phase."""

from __future__ import annotations

from typing import Any

import pytest

from kapsa.api import Phase
from kapsa.errors import InvalidSpecError
from kapsa.machines import (
    DELETED,
    PROJECT_MACHINE,
    BuildState,
    ProjectObservation,
    decide_project,
)

P, B, D, R, F, E = (
    Phase.PENDING,
    Phase.BUILDING,
    Phase.DEPLOYING,
    Phase.RUNNING,
    Phase.FAILED,
    Phase.EXPIRING,
)
TRACKED: dict[str, Any] = {"heads_known": True}
BUILT: dict[str, Any] = {**TRACKED, "build": BuildState.SUCCEEDED, "environments_total": 2}

CASES: list[tuple[str, Phase, dict[str, Any], tuple[str, str, str] | None]] = [
    # deletion wins over everything, from every live state
    *[
        (f"delete-from-{s}", s, {**BUILT, "deleting": True}, ("delete_requested", E, "Deleting"))
        for s in (P, B, D, R, F)
    ],
    ("expiring-waits-for-cleanup", E, {"deleting": True}, None),
    ("expiring-removed", E, {"deleting": True, "finalized": True}, ("removed", DELETED, "Removed")),
    (
        "finished-cleanup-still-passes-expiring",
        R,
        {"deleting": True, "finalized": True},
        ("delete_requested", E, "Deleting"),
    ),
    ("expiring-ignores-builds", E, {**BUILT, "deleting": True, "build": BuildState.FAILED}, None),
    # build failures, flow 7
    *[
        (
            f"build-failed-from-{s}",
            s,
            {**TRACKED, "build": BuildState.FAILED},
            ("build_failed", F, "BuildFailed"),
        )
        for s in (P, B, D, R)
    ],
    ("failed-stays-failed", F, {**TRACKED, "build": BuildState.FAILED}, None),
    # builds starting
    *[
        (
            f"build-started-from-{s}",
            s,
            {**TRACKED, "build": BuildState.RUNNING},
            ("build_started", B, "BuildStarted"),
        )
        for s in (P, D, R, F)
    ],
    ("building-stays-building", B, {**TRACKED, "build": BuildState.RUNNING}, None),
    # built: environments decide
    *[
        (
            f"rollout-failed-from-{s}",
            s,
            {**BUILT, "environments_failed": 1},
            ("rollout_failed", F, "RolloutFailed"),
        )
        for s in (P, B, D, R)
    ],
    ("failed-env-keeps-failed", F, {**BUILT, "environments_failed": 1}, None),
    *[
        (
            f"ready-from-{s}",
            s,
            {**BUILT, "environments_running": 2},
            ("environments_ready", R, "Ready"),
        )
        for s in (P, B, D, F)
    ],
    ("running-stays-running", R, {**BUILT, "environments_running": 2}, None),
    (
        "no-environments-is-ready",
        P,
        {**TRACKED, "build": BuildState.SUCCEEDED},
        ("environments_ready", R, "Ready"),
    ),
    (
        "build-succeeded",
        B,
        {**BUILT, "environments_running": 1},
        ("build_succeeded", D, "Deploying"),
    ),
    *[
        (
            f"rollout-started-from-{s}",
            s,
            {**BUILT, "environments_running": 1},
            ("rollout_started", D, "Deploying"),
        )
        for s in (P, R, F)
    ],
    ("deploying-stays-deploying", D, {**BUILT, "environments_running": 1}, None),
    # nothing known: stay
    ("heads-unknown", P, {"build": BuildState.FAILED}, None),
    ("heads-unknown-running", R, {"build": BuildState.RUNNING}, None),
    *[(f"no-build-{s}", s, TRACKED, None) for s in (P, B, D, R, F, E)],
]


@pytest.mark.parametrize(
    ("state", "observed", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decides(
    state: Phase, observed: dict[str, Any], expected: tuple[str, str, str] | None
) -> None:
    transition = decide_project(state, ProjectObservation(**observed))
    if expected is None:
        assert transition is None
        return
    assert transition is not None
    assert (transition.trigger, transition.dest, transition.reason) == expected
    assert (transition.kind, transition.source) == ("Project", state)
    assert PROJECT_MACHINE.get_transitions(
        trigger=transition.trigger, source=str(state), dest=transition.dest
    )


def test_build_failure_message_is_the_builders() -> None:
    observation = ProjectObservation(
        heads_known=True, build=BuildState.FAILED, build_message="npm install failed: E404"
    )
    transition = decide_project(Phase.RUNNING, observation)
    assert transition is not None
    assert transition.message == "npm install failed: E404"


def test_rollout_failure_names_the_environment() -> None:
    observation = ProjectObservation(
        heads_known=True,
        build=BuildState.SUCCEEDED,
        environments_total=3,
        environments_failed=2,
        failed_environment="staging",
    )
    transition = decide_project(Phase.DEPLOYING, observation)
    assert transition is not None
    assert "staging" in transition.message
    assert "1 more" in transition.message


@pytest.mark.parametrize("state", ["Unknown", "pending", ""])
def test_unknown_state_is_refused(state: str) -> None:
    with pytest.raises(InvalidSpecError, match="Project"):
        decide_project(state, ProjectObservation())


def test_deleted_is_final() -> None:
    assert decide_project(DELETED, ProjectObservation(deleting=True, finalized=True)) is None
