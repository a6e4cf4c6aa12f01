"""The Environment machine: one environment's image, from first build to rollout to removal.

The clock is the caller's (`observation.now`), so deadlines and TTLs are decided without reading
time here. The guards keep a state's own observation from leading anywhere once the state is
reached, even for the corner cases (a rollout re-aimed at a newer image, a Deployment that is
already ready), so a repeated reconcile with nothing new writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kapsa.api import Phase
from kapsa.machines.base import (
    LIVE,
    BuildState,
    Definition,
    Guard,
    Rule,
    Transition,
    define,
    deletion_rules,
    format_duration,
    is_deleting,
)

PENDING, BUILDING, DEPLOYING = Phase.PENDING.value, Phase.BUILDING.value, Phase.DEPLOYING.value
RUNNING, FAILED, EXPIRING = Phase.RUNNING.value, Phase.FAILED.value, Phase.EXPIRING.value


@dataclass(frozen=True)
class EnvironmentObservation:
    """What the reconciler saw of one Environment, reduced to what decides its phase.

    `deployment_ready` means the Deployment runs the image a rollout moves to (`target_image`, or
    `desired_image` when no rollout is recorded) and is ready. `branch_gone` must only be set after
    consecutive successful listings lacked the branch: a failed listing proves nothing.
    """

    now: datetime
    preview: bool = False
    deleting: bool = False
    finalized: bool = False
    expires_at: datetime | None = None
    branch_gone: bool = False
    build: BuildState = BuildState.NONE
    build_message: str = ""
    desired_image: str | None = None
    current_image: str | None = None
    target_image: str | None = None
    deployment_ready: bool = False
    rollout_started_at: datetime | None = None
    rollout_deadline: timedelta = timedelta(minutes=10)
    blocked_reason: str = ""
    release: str = ""
    release_message: str = ""
    pods_problem: str = ""
    """What the kubelet says keeps the rollout's pods from being ready ("reason: message")."""


#: The kinds of release a person or the auto-rollback policy asks for (`release` above): the
#: desired image is then the one the release names, not the branch's newest.
ROLLBACK, AUTO_ROLLBACK, PROMOTION = "rollback", "auto_rollback", "promotion"


def _ttl_over(o: EnvironmentObservation) -> bool:
    return o.preview and o.expires_at is not None and o.now >= o.expires_at


def _branch_gone(o: EnvironmentObservation) -> bool:
    return o.preview and o.branch_gone


def _leaving(o: EnvironmentObservation) -> bool:
    return o.deleting or _ttl_over(o) or _branch_gone(o)


def _has_image(o: EnvironmentObservation) -> bool:
    return o.desired_image is not None


def _blocked(o: EnvironmentObservation) -> bool:
    return bool(o.blocked_reason)


def _build_running(o: EnvironmentObservation) -> bool:
    return o.build is BuildState.RUNNING


def _build_failed(o: EnvironmentObservation) -> bool:
    return o.build is BuildState.FAILED


def _stale_target(o: EnvironmentObservation) -> bool:
    # A rollout still aimed at an image that is no longer the one wanted is about to be re-aimed;
    # neither its readiness nor its clock says anything about the wanted image.
    return (
        o.target_image is not None
        and o.desired_image is not None
        and o.target_image != o.desired_image
    )


def _ready_on_desired(o: EnvironmentObservation) -> bool:
    has_some_image = o.target_image is not None or o.desired_image is not None
    return o.deployment_ready and has_some_image and not _stale_target(o)


def _deadline_passed(o: EnvironmentObservation) -> bool:
    if o.deployment_ready or o.target_image is None or _stale_target(o):
        return False
    return o.rollout_started_at is not None and o.now > o.rollout_started_at + o.rollout_deadline


def _new_image(o: EnvironmentObservation) -> bool:
    return o.desired_image is not None and o.desired_image != o.current_image


def _other_than_failed(o: EnvironmentObservation) -> bool:
    failed_image = o.target_image if o.target_image is not None else o.current_image
    return o.desired_image is not None and o.desired_image != failed_image


def _moves_to(kind: str) -> Guard[EnvironmentObservation]:
    def guard(o: EnvironmentObservation) -> bool:
        running = o.target_image or o.current_image
        return o.release == kind and o.desired_image is not None and o.desired_image != running

    guard.__name__ = f"_moves_to_{kind}"
    return guard


def _release_message(default: str) -> Callable[[EnvironmentObservation], str]:
    def message(o: EnvironmentObservation) -> str:
        return o.release_message or default.format(image=o.desired_image, failed=o.target_image)

    return message


def _ready_message(o: EnvironmentObservation) -> str:
    return f"{o.target_image or o.desired_image} is running and ready."


def _deadline_message(o: EnvironmentObservation) -> str:
    started = o.rollout_started_at or o.now
    waited = format_duration((o.now - started).total_seconds())
    deadline = format_duration(o.rollout_deadline.total_seconds())
    why = f": {o.pods_problem}" if o.pods_problem else ""
    return (
        f"The rollout of {o.target_image} was not ready after {waited} (deadline {deadline}){why}."
    )


def _expired_message(o: EnvironmentObservation) -> str:
    expires_at = o.expires_at.isoformat() if o.expires_at else "its expiry time"
    return f"The preview expired at {expires_at}."


_NO_ROLLOUT = (_leaving, _blocked, _ready_on_desired, _deadline_passed)

RULES: tuple[Rule[EnvironmentObservation], ...] = (
    *deletion_rules("Environment", what="its Deployment, Service and Ingress"),
    Rule(
        trigger="ttl_expired",
        sources=LIVE,
        dest=EXPIRING,
        reason="TTLExpired",
        description="The preview outlived its time to live; Kapsa deletes it.",
        message=_expired_message,
        conditions=(_ttl_over,),
        unless=(is_deleting,),
    ),
    Rule(
        trigger="branch_deleted",
        sources=LIVE,
        dest=EXPIRING,
        reason="BranchDeleted",
        description="The preview's branch was missing from consecutive successful listings "
        "(deleted or merged); Kapsa deletes the preview.",
        message=lambda _: "The preview's branch is gone from the repository.",
        conditions=(_branch_gone,),
        unless=(is_deleting, _ttl_over),
    ),
    Rule(
        trigger="rollout_ready",
        sources=(PENDING, BUILDING, DEPLOYING, FAILED),
        dest=RUNNING,
        reason="Ready",
        description="The Deployment runs the wanted image and is ready; Kapsa records the image "
        "and the URL serves it.",
        message=_ready_message,
        conditions=(_ready_on_desired,),
        unless=(_leaving,),
    ),
    Rule(
        trigger="build_started",
        sources=(PENDING, FAILED),
        dest=BUILDING,
        reason="BuildStarted",
        description="No image exists yet and a build of the branch is running; Kapsa waits for it.",
        message=lambda _: "Building the first image for this environment.",
        conditions=(_build_running,),
        unless=(_leaving, _has_image),
    ),
    Rule(
        trigger="build_failed",
        sources=(PENDING, BUILDING),
        dest=FAILED,
        reason="BuildFailed",
        description="The build failed before any image existed; Kapsa waits for the next commit.",
        message=lambda o: o.build_message or "The build failed.",
        conditions=(_build_failed,),
        unless=(_leaving, _has_image),
    ),
    Rule(
        trigger="rollback_started",
        sources=(RUNNING, FAILED),
        dest=DEPLOYING,
        reason="RollbackStarted",
        description="Someone asked to return to an image the ledger shows Running and ready "
        "here; Kapsa rolls it out and quarantines the commit rolled back from, so auto-sync "
        "waits for a newer one.",
        message=_release_message("Rolling back to {image}."),
        conditions=(_moves_to(ROLLBACK),),
        unless=(_leaving, _blocked, _ready_on_desired),
    ),
    Rule(
        trigger="auto_rollback",
        sources=(FAILED,),
        dest=DEPLOYING,
        reason="AutoRollback",
        description="The rollout missed its deadline and the environment has autoRollback; "
        "Kapsa returns to the last image that ran ready and quarantines the failed commit.",
        message=_release_message(
            "The rollout of {failed} missed its deadline; rolling back to {image}."
        ),
        conditions=(_moves_to(AUTO_ROLLBACK),),
        unless=(_leaving, _blocked, _ready_on_desired),
    ),
    Rule(
        trigger="promotion_started",
        sources=(RUNNING, FAILED),
        dest=DEPLOYING,
        reason="PromotionStarted",
        description="Someone promoted the image another environment runs, after the ledger "
        "showed it Running and ready there long enough; Kapsa rolls it out without a rebuild.",
        message=_release_message("Promoting {image}."),
        conditions=(_moves_to(PROMOTION),),
        unless=(_leaving, _blocked, _ready_on_desired),
    ),
    Rule(
        trigger="rollout_started",
        sources=(PENDING,),
        dest=DEPLOYING,
        reason="RolloutStarted",
        description="An image is ready for a new environment; Kapsa applies the Deployment, "
        "Service and Ingress.",
        message=lambda o: f"Rolling out {o.desired_image}.",
        conditions=(_has_image,),
        unless=_NO_ROLLOUT,
    ),
    Rule(
        trigger="rollout_started",
        sources=(RUNNING,),
        dest=DEPLOYING,
        reason="RolloutStarted",
        description="A newer image was built; Kapsa updates the Deployment and the old pods serve "
        "until the new ones are ready.",
        message=lambda o: f"Rolling out {o.desired_image}.",
        conditions=(_new_image,),
        unless=_NO_ROLLOUT,
    ),
    Rule(
        trigger="rollout_started",
        sources=(FAILED,),
        dest=DEPLOYING,
        reason="RolloutStarted",
        description="An image other than the one that failed is ready; Kapsa tries again with it.",
        message=lambda o: f"Rolling out {o.desired_image}.",
        conditions=(_other_than_failed,),
        unless=_NO_ROLLOUT,
    ),
    Rule(
        trigger="build_succeeded",
        sources=(BUILDING,),
        dest=DEPLOYING,
        reason="BuildSucceeded",
        description="The first image was built; Kapsa applies the Deployment, Service and Ingress.",
        message=lambda o: f"The build succeeded; rolling out {o.desired_image}.",
        conditions=(_has_image,),
        unless=(_leaving, _blocked, _deadline_passed),
    ),
    Rule(
        trigger="rollout_deadline_exceeded",
        sources=(DEPLOYING,),
        dest=FAILED,
        reason="RolloutDeadlineExceeded",
        description="The Deployment did not become ready within the rollout deadline; the pods' "
        "events say why, and a newer image starts a fresh rollout.",
        message=_deadline_message,
        conditions=(_deadline_passed,),
        unless=(_leaving,),
    ),
)

ENVIRONMENT: Definition[EnvironmentObservation] = define("Environment", RULES)
ENVIRONMENT_MACHINE = ENVIRONMENT.machine


def decide_environment(state: str, observation: EnvironmentObservation) -> Transition | None:
    """The Environment's next move from `state`, or None when the observation changes nothing."""
    return ENVIRONMENT.decide(state, observation)
