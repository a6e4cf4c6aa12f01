"""The shared machines serve every worker thread at once and give each the same answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kapsa.api import Phase
from kapsa.machines import decide_environment, decide_project
from tests.machines.strategies import environment_observations, project_observations

STATES = st.sampled_from([*(phase.value for phase in Phase)])
WORK = st.lists(
    st.one_of(
        st.tuples(st.just("project"), STATES, project_observations),
        st.tuples(st.just("environment"), STATES, environment_observations),
    ),
    min_size=50,
    max_size=50,
)


def _decide(item: tuple[str, str, Any]) -> object:
    kind, state, observation = item
    decide = decide_project if kind == "project" else decide_environment
    return decide(state, observation)


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(work=WORK)
def test_concurrent_decisions_match_sequential_ones(work: list[tuple[str, str, Any]]) -> None:
    expected = [_decide(item) for item in work]
    repeated = work * 40
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(_decide, repeated, chunksize=7))
    assert answers == expected * 40
