"""Every Environment transition and guard, one row each: what a user sees in status.phase."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kapsa.api import Phase
from kapsa.errors import InvalidSpecError
from kapsa.machines import (
    DELETED,
    ENVIRONMENT_MACHINE,
    BuildState,
    EnvironmentObservation,
    decide_environment,
)

P, B, D, R, F, E = (
    Phase.PENDING,
    Phase.BUILDING,
    Phase.DEPLOYING,
    Phase.RUNNING,
    Phase.FAILED,
    Phase.EXPIRING,
)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
OLD, NEW, NEWER = "registry/app:old", "registry/app:new", "registry/app:newer"
LONG_AGO = NOW - timedelta(minutes=11)
RUNNING_OLD: dict[str, Any] = {"desired_image": OLD, "current_image": OLD}
ROLLING_NEW: dict[str, Any] = {
    "desired_image": NEW,
    "current_image": OLD,
    "target_image": NEW,
    "rollout_started_at": NOW - timedelta(minutes=2),
}
STUCK: dict[str, Any] = {**ROLLING_NEW, "rollout_started_at": LONG_AGO}
FIRST_BUILD_FAILED: dict[str, Any] = {"build": BuildState.FAILED, "build_message": "boom"}
LIVE = (P, B, D, R, F)

CASES: list[tuple[str, Phase, dict[str, Any], tuple[str, str, str] | None]] = [
    # leaving: deletion, TTL, branch gone; from every live state
    *[(f"delete-{s}", s, {"deleting": True}, ("delete_requested", E, "Deleting")) for s in LIVE],
    *[
        (f"ttl-{s}", s, {"preview": True, "expires_at": NOW}, ("ttl_expired", E, "TTLExpired"))
        for s in LIVE
    ],
    *[
        (
            f"branch-gone-{s}",
            s,
            {"preview": True, "branch_gone": True},
            ("branch_deleted", E, "BranchDeleted"),
        )
        for s in LIVE
    ],
    (
        "ttl-not-yet",
        R,
        {**RUNNING_OLD, "preview": True, "expires_at": NOW + timedelta(seconds=1)},
        None,
    ),
    ("standard-has-no-ttl", R, {**RUNNING_OLD, "expires_at": NOW - timedelta(days=1)}, None),
    ("standard-ignores-branch", R, {**RUNNING_OLD, "branch_gone": True}, None),
    (
        "deletion-beats-ttl",
        R,
        {"deleting": True, "preview": True, "expires_at": NOW},
        ("delete_requested", E, "Deleting"),
    ),
    (
        "ttl-beats-branch",
        R,
        {"preview": True, "expires_at": NOW, "branch_gone": True},
        ("ttl_expired", E, "TTLExpired"),
    ),
    ("expiring-waits", E, {"deleting": True, "preview": True, "expires_at": NOW}, None),
    ("expiring-removed", E, {"deleting": True, "finalized": True}, ("removed", DELETED, "Removed")),
    (
        "finished-cleanup-still-passes-expiring",
        D,
        {"deleting": True, "finalized": True},
        ("delete_requested", E, "Deleting"),
    ),
    (
        "leaving-beats-ready",
        D,
        {**ROLLING_NEW, "deployment_ready": True, "deleting": True},
        ("delete_requested", E, "Deleting"),
    ),
    # Pending
    (
        "pending-build-started",
        P,
        {"build": BuildState.RUNNING},
        ("build_started", B, "BuildStarted"),
    ),
    ("pending-build-failed", P, FIRST_BUILD_FAILED, ("build_failed", F, "BuildFailed")),
    ("pending-rollout", P, {"desired_image": NEW}, ("rollout_started", D, "RolloutStarted")),
    (
        "pending-rollout-while-newer-builds",
        P,
        {"desired_image": NEW, "build": BuildState.RUNNING},
        ("rollout_started", D, "RolloutStarted"),
    ),
    ("pending-blocked", P, {"desired_image": NEW, "blocked_reason": "SecretNotFound"}, None),
    (
        "pending-already-ready",
        P,
        {"desired_image": NEW, "deployment_ready": True},
        ("rollout_ready", R, "Ready"),
    ),
    ("pending-nothing", P, {}, None),
    # Building
    (
        "building-succeeded",
        B,
        {"desired_image": NEW, "build": BuildState.SUCCEEDED},
        ("build_succeeded", D, "BuildSucceeded"),
    ),
    ("building-blocked", B, {"desired_image": NEW, "blocked_reason": "DomainPoolNotReady"}, None),
    ("building-failed", B, FIRST_BUILD_FAILED, ("build_failed", F, "BuildFailed")),
    ("building-waits", B, {"build": BuildState.RUNNING}, None),
    # Deploying
    (
        "deploying-ready",
        D,
        {**ROLLING_NEW, "deployment_ready": True},
        ("rollout_ready", R, "Ready"),
    ),
    ("deploying-waits", D, ROLLING_NEW, None),
    ("deploying-deadline", D, STUCK, ("rollout_deadline_exceeded", F, "RolloutDeadlineExceeded")),
    (
        "deploying-deadline-exactly",
        D,
        {**STUCK, "rollout_started_at": NOW - timedelta(minutes=10)},
        None,
    ),
    (
        "deploying-short-deadline",
        D,
        {**ROLLING_NEW, "rollout_deadline": timedelta(minutes=1)},
        ("rollout_deadline_exceeded", F, "RolloutDeadlineExceeded"),
    ),
    ("deploying-reaimed-not-judged", D, {**STUCK, "desired_image": NEWER}, None),
    (
        "deploying-ready-late-is-ready",
        D,
        {**STUCK, "deployment_ready": True},
        ("rollout_ready", R, "Ready"),
    ),
    ("deploying-ignores-failed-build", D, {**ROLLING_NEW, "build": BuildState.FAILED}, None),
    # Running
    (
        "running-new-image",
        R,
        {**RUNNING_OLD, "desired_image": NEW},
        ("rollout_started", D, "RolloutStarted"),
    ),
    ("running-same-image", R, RUNNING_OLD, None),
    (
        "running-new-image-blocked",
        R,
        {**RUNNING_OLD, "desired_image": NEW, "blocked_reason": "SecretNotFound"},
        None,
    ),
    (
        "running-keeps-image-on-failed-build",
        R,
        {**RUNNING_OLD, **FIRST_BUILD_FAILED, "desired_image": OLD},
        None,
    ),
    ("running-ignores-build", R, {**RUNNING_OLD, "build": BuildState.RUNNING}, None),
    # Failed
    ("failed-recovers", F, {**STUCK, "deployment_ready": True}, ("rollout_ready", R, "Ready")),
    (
        "failed-retries-newer-image",
        F,
        {**STUCK, "desired_image": NEWER},
        ("rollout_started", D, "RolloutStarted"),
    ),
    (
        "failed-newer-image-blocked",
        F,
        {**STUCK, "desired_image": NEWER, "blocked_reason": "SecretNotFound"},
        None,
    ),
    ("failed-same-image-waits", F, STUCK, None),
    (
        "failed-build-then-image",
        F,
        {"desired_image": NEW},
        ("rollout_started", D, "RolloutStarted"),
    ),
    (
        "failed-build-then-new-build",
        F,
        {"build": BuildState.RUNNING},
        ("build_started", B, "BuildStarted"),
    ),
    ("failed-build-stays", F, FIRST_BUILD_FAILED, None),
]


@pytest.mark.parametrize(
    ("state", "observed", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decides(
    state: Phase, observed: dict[str, Any], expected: tuple[str, str, str] | None
) -> None:
    transition = decide_environment(state, EnvironmentObservation(now=NOW, **observed))
    if expected is None:
        assert transition is None
        return
    assert transition is not None
    assert (transition.trigger, transition.dest, transition.reason) == expected
    assert (transition.kind, transition.source) == ("Environment", state)
    assert ENVIRONMENT_MACHINE.get_transitions(
        trigger=transition.trigger, source=str(state), dest=transition.dest
    )


def test_deadline_message_says_how_long_it_waited() -> None:
    transition = decide_environment(Phase.DEPLOYING, EnvironmentObservation(now=NOW, **STUCK))
    assert transition is not None
    assert transition.message == f"The rollout of {NEW} was not ready after 11m (deadline 10m)."


def test_build_failure_message_is_the_builders() -> None:
    transition = decide_environment(
        Phase.BUILDING, EnvironmentObservation(now=NOW, **FIRST_BUILD_FAILED)
    )
    assert transition is not None
    assert transition.message == "boom"


def test_ttl_message_names_the_expiry() -> None:
    observation = EnvironmentObservation(now=NOW, preview=True, expires_at=NOW - timedelta(hours=1))
    transition = decide_environment(Phase.RUNNING, observation)
    assert transition is not None
    assert "2025-03-01T11:00:00+00:00" in transition.message


@pytest.mark.parametrize("state", ["Deleting", "running", "Unknown"])
def test_unknown_state_is_refused(state: str) -> None:
    with pytest.raises(InvalidSpecError, match="Environment"):
        decide_environment(state, EnvironmentObservation(now=NOW))


def test_deleted_is_final() -> None:
    assert (
        decide_environment(DELETED, EnvironmentObservation(now=NOW, deleting=True, finalized=True))
        is None
    )
