"""The Project and Environment state machines: pure decisions from (state, observation).

Each kind has one shared `transitions.Machine` that holds the states, the transitions, their
guards and their priority. `decide_project` and `decide_environment` read it and return the one
transition an observation calls for, or None when nothing changes.
"""

from __future__ import annotations

from kapsa.machines.base import DELETED, BuildState, Transition, UnknownStateError
from kapsa.machines.environment import (
    ENVIRONMENT_MACHINE,
    EnvironmentObservation,
    decide_environment,
)
from kapsa.machines.project import PROJECT_MACHINE, ProjectObservation, decide_project
from kapsa.machines.render import KINDS, Kind, dot, mermaid, transitions_of

__all__ = [
    "DELETED",
    "ENVIRONMENT_MACHINE",
    "KINDS",
    "PROJECT_MACHINE",
    "BuildState",
    "EnvironmentObservation",
    "Kind",
    "ProjectObservation",
    "Transition",
    "UnknownStateError",
    "decide_environment",
    "decide_project",
    "dot",
    "mermaid",
    "transitions_of",
]
