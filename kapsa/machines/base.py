"""What both machines share: the transition record, build states, and the decision engine.

A decision reads the shared `transitions.Machine` and never changes it: no model is attached, no
callback runs, and no state is stored on the machine, so one definition per kind serves every
object and every worker thread at once (a model bound per object leaks). The machine owns the graph,
the guards and their priority (the order triggers were declared in); the rules only add what
people read: the reason, the message and the sentence in the docs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from transitions import EventData, Machine, State

from kapsa.api import Phase
from kapsa.errors import InvalidSpecError

DELETED = "Deleted"
"""The pseudo-state after Expiring: the object is gone. Not a Phase, because no status shows it."""

LIVE: tuple[str, ...] = tuple(phase.value for phase in Phase if phase is not Phase.EXPIRING)
"""The states an object can be in while it is wanted; any of them can be told to go."""

Observation = TypeVar("Observation")
Guard = Callable[[Observation], bool]


class BuildState(StrEnum):
    """How the build an object waits for stands, as the builder reports it."""

    NONE = "None"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class UnknownStateError(InvalidSpecError):
    """A status names a state the machine does not have, so no decision can be trusted."""


@dataclass(frozen=True)
class Transition:
    """One move of one object, worded for conditions, the ledger and people."""

    kind: str
    source: str
    dest: str
    trigger: str
    reason: str
    message: str


@dataclass(frozen=True)
class Rule(Generic[Observation]):
    """One declared move: the machine gets the graph and guards, the rest is for people."""

    trigger: str
    sources: tuple[str, ...]
    dest: str
    reason: str
    description: str
    message: Callable[[Observation], str]
    conditions: tuple[Guard[Observation], ...] = ()
    unless: tuple[Guard[Observation], ...] = ()


class Deletable(Protocol):
    """What every kind's observation says about its own deletion."""

    @property
    def deleting(self) -> bool: ...

    @property
    def finalized(self) -> bool: ...


def is_deleting(o: Deletable) -> bool:
    return o.deleting


def is_finalized(o: Deletable) -> bool:
    return o.finalized


def deletion_rules(kind: str, *, what: str) -> tuple[Rule[Any], Rule[Any]]:
    """The two moves every kind shares at its end: deleted -> Expiring -> gone.

    `what` says what Kapsa removes before it lets the object go, for the docs.
    """
    return (
        Rule(
            trigger="delete_requested",
            sources=LIVE,
            dest=Phase.EXPIRING.value,
            reason="Deleting",
            description=f"The {kind} was deleted; Kapsa removes {what} before letting it go.",
            message=lambda _: f"The {kind} is being deleted; {what} are being removed.",
            conditions=(is_deleting,),
        ),
        Rule(
            trigger="removed",
            sources=(Phase.EXPIRING.value,),
            dest=DELETED,
            reason="Removed",
            description=f"Deletion clean-up is done; Kapsa releases the finalizer and the {kind} "
            "is gone.",
            message=lambda _: f"Clean-up finished; the {kind} is gone.",
            conditions=(is_deleting, is_finalized),
        ),
    )


@dataclass(frozen=True)
class Definition(Generic[Observation]):
    """A kind's shared machine together with the rules it was built from."""

    kind: str
    machine: Machine
    rules: dict[tuple[str, str], Rule[Observation]]

    def decide(self, state: str, observation: Observation) -> Transition | None:
        """The first declared transition out of `state` whose guards all hold, or None."""
        source = str(state)
        machine = self.machine
        if source not in machine.states:
            raise UnknownStateError(f"{self.kind} has no state {source!r}")
        source_state = machine.states[source]
        for event in machine.events.values():
            # .get, not [...]: the mapping is a defaultdict shared by every thread.
            for candidate in event.transitions.get(source, ()):
                event_data = EventData(source_state, event, machine, None, (observation,), {})
                if all(condition.check(event_data) for condition in candidate.conditions):
                    rule = self.rules[(event.name, source)]
                    return Transition(
                        kind=self.kind,
                        source=source,
                        dest=str(candidate.dest),
                        trigger=event.name,
                        reason=rule.reason,
                        message=rule.message(observation),
                    )
        return None

    def transitions(self) -> list[tuple[str, str, str, str]]:
        """(source, trigger, dest, description) in the machine's priority order."""
        return [
            (source, event.name, str(candidate.dest), self.rules[(event.name, source)].description)
            for event in self.machine.events.values()
            for source, candidates in event.transitions.items()
            for candidate in candidates
        ]


def define(kind: str, rules: Sequence[Rule[Observation]]) -> Definition[Observation]:
    """Build the shared machine of a kind; the order of `rules` is the priority of triggers."""
    by_key: dict[tuple[str, str], Rule[Observation]] = {}
    for rule in rules:
        for source in rule.sources:
            if (rule.trigger, source) in by_key:
                raise ValueError(f"{kind}: {rule.trigger} from {source} is declared twice")
            by_key[(rule.trigger, source)] = rule
    machine = Machine(
        model=None,
        states=[*(phase.value for phase in Phase), State(DELETED, final=True)],
        initial=Phase.PENDING.value,
        transitions=[
            {
                "trigger": rule.trigger,
                "source": list(rule.sources),
                "dest": rule.dest,
                "conditions": list(rule.conditions),
                "unless": list(rule.unless),
            }
            for rule in rules
        ],
        auto_transitions=False,
        send_event=False,
        name=kind,
    )
    return Definition(kind=kind, machine=machine, rules=by_key)


def format_duration(duration: float) -> str:
    """Seconds as people say them ("10m 3s"), for messages about waiting."""
    seconds = max(int(duration), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"))]
    kept = [part for part in parts if not part.startswith("0")]
    return " ".join(kept) or "0s"
