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
from kapsa.machines.environment import AUTO_ROLLBACK, PROMOTION, ROLLBACK

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
# Releases: the reconciler has already checked the request against the ledger and made the
# release's image the desired one; the machine only decides whether the rollout starts.
RUNNING_NEW: dict[str, Any] = {"desired_image": NEW, "current_image": NEW}
ROLLBACK_RUNNING: dict[str, Any] = {**RUNNING_NEW, "desired_image": OLD, "release": ROLLBACK}
PROMOTE_RUNNING: dict[str, Any] = {**RUNNING_OLD, "desired_image": NEWER, "release": PROMOTION}
# Failed at the deadline while rolling NEW out over OLD; the release goes back to OLD.
BACK_FROM_STUCK: dict[str, Any] = {**STUCK, "desired_image": OLD}
ROLLBACK_FAILED: dict[str, Any] = {**BACK_FROM_STUCK, "release": ROLLBACK}
AUTO_FAILED: dict[str, Any] = {**BACK_FROM_STUCK, "release": AUTO_ROLLBACK}
PROMOTE_FAILED: dict[str, Any] = {**STUCK, "desired_image": NEWER, "release": PROMOTION}
ROLLBACK_MOVE = ("rollback_started", D, "RollbackStarted")
AUTO_MOVE = ("auto_rollback", D, "AutoRollback")
PROMOTION_MOVE = ("promotion_started", D, "PromotionStarted")
PLAIN_ROLLOUT = ("rollout_started", D, "RolloutStarted")
RELEASES: list[tuple[str, Phase, dict[str, Any], tuple[str, str, str]]] = [
    ("rollback-running", R, ROLLBACK_RUNNING, ROLLBACK_MOVE),
    ("promotion-running", R, PROMOTE_RUNNING, PROMOTION_MOVE),
    ("rollback-failed", F, ROLLBACK_FAILED, ROLLBACK_MOVE),
    ("auto-rollback-failed", F, AUTO_FAILED, AUTO_MOVE),
    ("promotion-failed", F, PROMOTE_FAILED, PROMOTION_MOVE),
]

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
    # Releases: rollback, auto-rollback and promotion. Each also beats the plain rollout its
    # observation would otherwise start (the new image from Running, another one from Failed).
    *RELEASES,
    # ... each is guarded by its own kind of release: without one, the same images are a plain
    # rollout, and a release of another kind is not taken for it.
    ("rollback-needs-the-release", R, {**ROLLBACK_RUNNING, "release": ""}, PLAIN_ROLLOUT),
    ("promotion-needs-the-release", F, {**PROMOTE_FAILED, "release": ""}, PLAIN_ROLLOUT),
    (
        "auto-rollback-not-from-running",
        R,
        {**ROLLBACK_RUNNING, "release": AUTO_ROLLBACK},
        PLAIN_ROLLOUT,
    ),
    ("unknown-release-is-plain", F, {**AUTO_FAILED, "release": "revert"}, PLAIN_ROLLOUT),
    # ... by an image to go to that is not the one already there: the serving image in
    # Running, the failed rollout's target in Failed, else the image it last ran.
    ("rollback-to-serving-image", R, {**RUNNING_OLD, "release": ROLLBACK}, None),
    ("promotion-of-serving-image", R, {**RUNNING_OLD, "release": PROMOTION}, None),
    ("rollback-without-image", R, {**ROLLBACK_RUNNING, "desired_image": None}, None),
    ("rollback-to-failed-image", F, {**STUCK, "release": ROLLBACK}, None),
    ("auto-rollback-to-failed-image", F, {**STUCK, "release": AUTO_ROLLBACK}, None),
    ("promotion-of-failed-image", F, {**STUCK, "release": PROMOTION}, None),
    (
        "rollback-failed-without-target",
        F,
        {"desired_image": OLD, "current_image": OLD, "release": ROLLBACK},
        None,
    ),
    # ... and not while blocked: the release waits with the rollout it would start.
    *[
        (f"{name}-blocked", state, {**observed, "blocked_reason": "SecretNotFound"}, None)
        for name, state, observed, _ in RELEASES
    ],
    # Releases start only from Running or Failed: a rollout in flight is not re-aimed by the
    # machine, and before any image ran a release is an ordinary first rollout.
    (
        "deploying-ignores-rollback",
        D,
        {**ROLLING_NEW, "desired_image": OLD, "release": ROLLBACK},
        None,
    ),
    (
        "deploying-ignores-auto-rollback",
        D,
        {**STUCK, "desired_image": OLD, "release": AUTO_ROLLBACK},
        None,
    ),
    (
        "deploying-ignores-promotion",
        D,
        {**ROLLING_NEW, "desired_image": NEWER, "release": PROMOTION},
        None,
    ),
    (
        "pending-promotion-is-first-rollout",
        P,
        {"desired_image": NEW, "release": PROMOTION},
        PLAIN_ROLLOUT,
    ),
    (
        "building-rollback-is-build-succeeded",
        B,
        {"desired_image": OLD, "release": ROLLBACK},
        ("build_succeeded", D, "BuildSucceeded"),
    ),
    ("expiring-ignores-rollback", E, {**ROLLBACK_RUNNING, "deleting": True}, None),
    # Leaving beats every release: deletion, then the TTL, then the deleted branch.
    *[
        (
            f"{name}-deleting",
            state,
            {**observed, "deleting": True},
            ("delete_requested", E, "Deleting"),
        )
        for name, state, observed, _ in RELEASES
    ],
    *[
        (
            f"{name}-ttl",
            state,
            {**observed, "preview": True, "expires_at": NOW, "branch_gone": True},
            ("ttl_expired", E, "TTLExpired"),
        )
        for name, state, observed, _ in RELEASES
    ],
    *[
        (
            f"{name}-branch-gone",
            state,
            {**observed, "preview": True, "branch_gone": True},
            ("branch_deleted", E, "BranchDeleted"),
        )
        for name, state, observed, _ in RELEASES
    ],
    *[
        (
            f"{name}-preview-in-time",
            state,
            {**observed, "preview": True, "expires_at": NOW + timedelta(hours=1)},
            move,
        )
        for name, state, observed, move in RELEASES
    ],
    # A Deployment found ready on the wanted image settles Failed as Running before any
    # release is looked at: rollout_ready is declared first.
    (
        "failed-ready-beats-release",
        F,
        {
            "desired_image": NEW,
            "current_image": OLD,
            "deployment_ready": True,
            "release": PROMOTION,
        },
        ("rollout_ready", R, "Ready"),
    ),
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


@pytest.mark.parametrize(
    ("state", "observed", "expected"),
    [
        (R, ROLLBACK_RUNNING, f"Rolling back to {OLD}."),
        (F, ROLLBACK_FAILED, f"Rolling back to {OLD}."),
        (F, AUTO_FAILED, f"The rollout of {NEW} missed its deadline; rolling back to {OLD}."),
        (R, PROMOTE_RUNNING, f"Promoting {NEWER}."),
        (F, PROMOTE_FAILED, f"Promoting {NEWER}."),
    ],
)
def test_release_message_without_the_reconcilers(
    state: Phase, observed: dict[str, Any], expected: str
) -> None:
    transition = decide_environment(state, EnvironmentObservation(now=NOW, **observed))
    assert transition is not None
    assert transition.message == expected


@pytest.mark.parametrize(
    ("state", "observed"), [case[1:3] for case in RELEASES], ids=[case[0] for case in RELEASES]
)
def test_release_message_is_the_reconcilers(state: Phase, observed: dict[str, Any]) -> None:
    """The reconciler's message names the commit and the evidence; the machine keeps it."""
    said = "Rolling back to 1a2b3c4 (registry/app:old), which ran ready here."
    observation = EnvironmentObservation(now=NOW, **observed, release_message=said)
    transition = decide_environment(state, observation)
    assert transition is not None
    assert transition.message == said


@pytest.mark.parametrize(
    ("state", "observed"), [case[1:3] for case in RELEASES], ids=[case[0] for case in RELEASES]
)
def test_release_settles_in_deploying(state: Phase, observed: dict[str, Any]) -> None:
    """Seen again from Deploying, the release neither moves on nor is judged by the old clock."""
    observation = EnvironmentObservation(now=NOW, **observed)
    transition = decide_environment(state, observation)
    assert transition is not None
    assert decide_environment(transition.dest, observation) is None
