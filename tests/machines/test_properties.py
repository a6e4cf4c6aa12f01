"""Properties that hold for every observation: no illegal move, no loop, no dead end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import Phase as Stage
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from kapsa.api import Phase
from kapsa.machines import (
    DELETED,
    Transition,
    decide_environment,
    decide_project,
    transitions_of,
)
from kapsa.machines.environment import AUTO_ROLLBACK, PROMOTION, ROLLBACK
from tests.machines.strategies import environment_observations, project_observations

Decide = Callable[[str, Any], Transition | None]
KINDS: list[tuple[str, Decide, st.SearchStrategy[Any]]] = [
    ("project", decide_project, project_observations),
    ("environment", decide_environment, environment_observations),
]
IDS = [kind for kind, *_ in KINDS]
STATES = [phase.value for phase in Phase]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Any witness will do: searching without shrinking keeps these tests fast.
SEARCH = settings(max_examples=5000, database=None, phases=[Stage.generate])


def _declared(kind: str) -> set[tuple[str, str, str]]:
    return {(source, trigger, dest) for source, trigger, dest, _ in transitions_of(kind)}  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "decide", "observations"), KINDS, ids=IDS)
def test_only_declared_moves(
    kind: str, decide: Decide, observations: st.SearchStrategy[Any]
) -> None:
    declared = _declared(kind)

    @FAST
    @given(state=st.sampled_from(STATES), observation=observations)
    def check(state: str, observation: Any) -> None:
        transition = decide(state, observation)
        if transition is not None:
            assert (transition.source, transition.trigger, transition.dest) in declared

    check()


@pytest.mark.parametrize(("kind", "decide", "observations"), KINDS, ids=IDS)
def test_level_based(kind: str, decide: Decide, observations: st.SearchStrategy[Any]) -> None:
    """Once an observation has moved an object, seeing it again moves nothing and writes nothing."""

    @FAST
    @given(state=st.sampled_from(STATES), observation=observations)
    def check(state: str, observation: Any) -> None:
        transition = decide(state, observation)
        if transition is None:
            return
        follow_up = decide(transition.dest, observation)
        if follow_up is not None:
            # The one chain: deletion seen together with finished clean-up goes through Expiring.
            assert (transition.trigger, follow_up.trigger) == ("delete_requested", "removed")
            assert decide(follow_up.dest, observation) is None

    check()


@pytest.mark.parametrize(("kind", "decide", "observations"), KINDS, ids=IDS)
def test_sequences_stay_inside_the_machine(
    kind: str, decide: Decide, observations: st.SearchStrategy[Any]
) -> None:
    states = {*STATES, DELETED}

    @FAST
    @given(sequence=st.lists(observations, max_size=10))
    def check(sequence: list[Any]) -> None:
        state = Phase.PENDING.value
        for observation in sequence:
            if state == DELETED:
                break
            transition = decide(state, observation)
            if transition is not None:
                assert transition.source == state
                state = transition.dest
            assert state in states

    check()


@pytest.mark.parametrize(("kind", "decide", "observations"), KINDS, ids=IDS)
def test_every_state_is_reachable(
    kind: str, decide: Decide, observations: st.SearchStrategy[Any]
) -> None:
    """Grow the set of states reached from Pending until nothing new is found: that is all."""
    reached = {Phase.PENDING.value}
    unreached = [state for state in (*STATES, DELETED) if state not in reached]
    progress = True
    while unreached and progress:
        progress = False
        for target in list(unreached):
            try:
                find(
                    st.tuples(st.sampled_from(sorted(reached)), observations),
                    partial(_leads_to, decide, target=target),
                    settings=SEARCH,
                )
            except NoSuchExample:
                continue
            reached.add(target)
            unreached.remove(target)
            progress = True
    assert not unreached


def _leads_to(decide: Decide, step: tuple[str, Any], *, target: str) -> bool:
    transition = decide(*step)
    return transition is not None and transition.dest == target


@pytest.mark.parametrize(("kind", "decide", "observations"), KINDS, ids=IDS)
@pytest.mark.parametrize("state", STATES)
def test_every_state_has_a_way_out(
    kind: str, decide: Decide, observations: st.SearchStrategy[Any], state: str
) -> None:
    """Failed and Expiring above all: no object is stuck for good, whatever happened before."""
    observation = find(
        observations,
        lambda o: decide(state, o) is not None,
        settings=SEARCH,
    )
    transition = decide(state, observation)
    assert transition is not None
    assert transition.dest != state


@FAST
@given(observation=environment_observations)
def test_a_stuck_rollout_always_ends(observation: Any) -> None:
    """Deploying cannot hang: past its deadline, a rollout of the wanted image fails."""
    stuck = replace(
        observation,
        deleting=False,
        preview=False,
        deployment_ready=False,
        target_image="registry/app:x",
        desired_image="registry/app:x",
        rollout_started_at=observation.now - observation.rollout_deadline * 2,
    )
    transition = decide_environment(Phase.DEPLOYING, stuck)
    assert transition is not None
    assert transition.dest == Phase.FAILED


RELEASE_TRIGGERS = {"rollback_started", "auto_rollback", "promotion_started"}


@FAST
@given(
    state=st.sampled_from([Phase.RUNNING.value, Phase.FAILED.value]),
    observation=environment_observations,
    release=st.sampled_from([ROLLBACK, AUTO_ROLLBACK, PROMOTION]),
)
def test_a_started_release_is_level_based(state: str, observation: Any, release: str) -> None:
    """A release seen again after it started moves nothing: one rollout per request.

    The general property above sees releases only now and then; here every observation carries
    one, from the states a release starts from, and nobody is leaving or blocked.
    """
    asked = replace(
        observation, release=release, deleting=False, branch_gone=False, blocked_reason=""
    )
    transition = decide_environment(state, asked)
    if transition is None or transition.trigger not in RELEASE_TRIGGERS:
        return
    assert transition.dest == Phase.DEPLOYING
    assert decide_environment(transition.dest, asked) is None
