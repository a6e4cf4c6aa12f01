"""The Project machine: a Project follows the builds of its tracked branches and its environments.

Guards are pure functions of one observation, so the same observation always gives the same
answer, and an observation that led into a state leads nowhere from it (level-based).
"""

from __future__ import annotations

from dataclasses import dataclass

from kapsa.api import Phase
from kapsa.machines.base import (
    BuildState,
    Definition,
    Rule,
    Transition,
    define,
    deletion_rules,
)

PENDING, BUILDING, DEPLOYING = Phase.PENDING.value, Phase.BUILDING.value, Phase.DEPLOYING.value
RUNNING, FAILED, EXPIRING = Phase.RUNNING.value, Phase.FAILED.value, Phase.EXPIRING.value


@dataclass(frozen=True)
class ProjectObservation:
    """What the reconciler saw of a Project and its children, reduced to what decides its phase."""

    deleting: bool = False
    finalized: bool = False
    heads_known: bool = False
    build: BuildState = BuildState.NONE
    build_message: str = ""
    environments_total: int = 0
    environments_running: int = 0
    environments_failed: int = 0
    failed_environment: str = ""


def _tracking(o: ProjectObservation) -> bool:
    # Without every head known, the build state may describe commits that are no longer newest.
    return o.heads_known and not o.deleting


def _build_failed(o: ProjectObservation) -> bool:
    return o.build is BuildState.FAILED


def _build_running(o: ProjectObservation) -> bool:
    return o.build is BuildState.RUNNING


def _built(o: ProjectObservation) -> bool:
    return o.build is BuildState.SUCCEEDED


def _environment_failed(o: ProjectObservation) -> bool:
    return o.environments_failed > 0


def _all_running(o: ProjectObservation) -> bool:
    return o.environments_running >= o.environments_total


def _counts(o: ProjectObservation) -> str:
    return f"{o.environments_running} of {o.environments_total} environments are running"


def _rollout_failed_message(o: ProjectObservation) -> str:
    name = o.failed_environment or "An environment"
    others = o.environments_failed - 1
    tail = f" ({others} more failed too)" if others > 0 else ""
    return f"{name} failed to roll out{tail}."


def _ready_message(o: ProjectObservation) -> str:
    if o.environments_total == 0:
        return "The build is ready; no environments are wanted."
    return f"All {o.environments_total} environments are running."


RULES: tuple[Rule[ProjectObservation], ...] = (
    *deletion_rules("Project", what="its environments and builds"),
    Rule(
        trigger="build_failed",
        sources=(PENDING, BUILDING, DEPLOYING, RUNNING),
        dest=FAILED,
        reason="BuildFailed",
        description="A build of a tracked branch's newest commit failed; environments keep their "
        "last good image and Kapsa waits for the next commit.",
        message=lambda o: o.build_message or "A build of a tracked branch failed.",
        conditions=(_tracking, _build_failed),
    ),
    Rule(
        trigger="build_started",
        sources=(PENDING, DEPLOYING, RUNNING, FAILED),
        dest=BUILDING,
        reason="BuildStarted",
        description="A new commit is being built; running environments are left alone until the "
        "image is ready.",
        message=lambda _: "Building the newest commit of the tracked branches.",
        conditions=(_tracking, _build_running),
    ),
    Rule(
        trigger="rollout_failed",
        sources=(PENDING, BUILDING, DEPLOYING, RUNNING),
        dest=FAILED,
        reason="RolloutFailed",
        description="The images are built but an environment failed to roll out; the environment's "
        "own status says why.",
        message=_rollout_failed_message,
        conditions=(_tracking, _built, _environment_failed),
    ),
    Rule(
        trigger="environments_ready",
        sources=(PENDING, BUILDING, DEPLOYING, FAILED),
        dest=RUNNING,
        reason="Ready",
        description="Every wanted environment runs the newest image and is ready.",
        message=_ready_message,
        conditions=(_tracking, _built, _all_running),
        unless=(_environment_failed,),
    ),
    Rule(
        trigger="build_succeeded",
        sources=(BUILDING,),
        dest=DEPLOYING,
        reason="Deploying",
        description="The build succeeded; Kapsa rolls the new image out to the environments.",
        message=lambda o: f"The build succeeded; {_counts(o)}.",
        conditions=(_tracking, _built),
        unless=(_environment_failed, _all_running),
    ),
    Rule(
        trigger="rollout_started",
        sources=(PENDING, RUNNING, FAILED),
        dest=DEPLOYING,
        reason="Deploying",
        description="Built images are being rolled out (a new environment, a recovered one, or one "
        "that is not running yet); Kapsa waits for each to become ready.",
        message=lambda o: f"Rolling out; {_counts(o)}.",
        conditions=(_tracking, _built),
        unless=(_environment_failed, _all_running),
    ),
)

PROJECT: Definition[ProjectObservation] = define("Project", RULES)
PROJECT_MACHINE = PROJECT.machine


def decide_project(state: str, observation: ProjectObservation) -> Transition | None:
    """The Project's next move from `state`, or None when the observation changes nothing."""
    return PROJECT.decide(state, observation)
