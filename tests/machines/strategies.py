"""Hypothesis strategies for observations, with values chosen so that guards often flip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from kapsa.machines import BuildState, EnvironmentObservation, ProjectObservation
from kapsa.machines.environment import AUTO_ROLLBACK, PROMOTION, ROLLBACK

T0 = datetime(2025, 1, 1, tzinfo=UTC)
IMAGES = st.sampled_from([None, "registry/app:a", "registry/app:b", "registry/app:c"])
#: No release most of the time, as in a cluster; each kind often enough that its guards flip.
RELEASES = st.sampled_from(["", "", ROLLBACK, AUTO_ROLLBACK, PROMOTION])
MOMENTS = st.integers(min_value=-30, max_value=30).map(
    lambda minutes: T0 + timedelta(minutes=minutes)
)

project_observations = st.builds(
    ProjectObservation,
    deleting=st.booleans(),
    finalized=st.booleans(),
    heads_known=st.booleans(),
    build=st.sampled_from(BuildState),
    build_message=st.sampled_from(["", "npm install failed"]),
    environments_total=st.integers(min_value=0, max_value=3),
    environments_running=st.integers(min_value=0, max_value=3),
    environments_failed=st.integers(min_value=0, max_value=2),
    failed_environment=st.sampled_from(["", "prod"]),
)

environment_observations = st.builds(
    EnvironmentObservation,
    now=st.just(T0),
    preview=st.booleans(),
    deleting=st.booleans(),
    finalized=st.booleans(),
    expires_at=st.none() | MOMENTS,
    branch_gone=st.booleans(),
    build=st.sampled_from(BuildState),
    build_message=st.sampled_from(["", "compilation error"]),
    desired_image=IMAGES,
    current_image=IMAGES,
    target_image=IMAGES,
    deployment_ready=st.booleans(),
    rollout_started_at=st.none() | MOMENTS,
    rollout_deadline=st.sampled_from([timedelta(minutes=5), timedelta(minutes=10)]),
    blocked_reason=st.sampled_from(["", "SecretNotFound"]),
    release=RELEASES,
    release_message=st.sampled_from(["", "Rolling back to 1a2b3c4 (registry/app:a)."]),
)
