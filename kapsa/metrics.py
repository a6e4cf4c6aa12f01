"""The operator's Prometheus metrics, in a registry of their own.

Their own registry, not prometheus-client's global one, so that `/metrics` shows what Kapsa
measures and nothing a library registered behind its back, and so that tests can read a counter
without caring what else the process imported. Any layer may import this module: it depends on
prometheus-client alone.

The reconcile code calls the small functions below rather than the metric objects, so that the
label values stay a closed set (unbounded label values would make Prometheus store a series per
value forever).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY: Final = CollectorRegistry(auto_describe=True)

#: Reconciles read caches and write a few objects; a git read or a registry call can take seconds.
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: `git ls-remote` takes about a second on a large repository; the git timeout is 60 s.
_POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Buildpacks builds take from under a minute (cached layers) to tens of minutes.
_BUILD_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)

ReconcileResult = Literal["success", "requeue", "error"]
PollResult = Literal["changed", "unchanged", "error"]
BuildOutcome = Literal["succeeded", "failed"]
BuildType = Literal["standard", "preview"]
WebhookProvider = Literal["github", "gitea", "gitlab", "unknown"]
WebhookResult = Literal[
    "accepted",
    "ignored",
    "unknown_project",
    "bad_signature",
    "too_large",
    "replayed",
    "bad_request",
    "unavailable",
]

#: The kinds the operator reconciles; pre-created so that rate() works from the first scrape.
KINDS: Final = ("Project", "Environment", "DomainPool", "Registry")

RECONCILE_TOTAL: Final = Counter(
    "kapsa_reconcile_total",
    "Reconciles finished, by kind and result (success, requeue, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION: Final = Histogram(
    "kapsa_reconcile_duration_seconds",
    "Time one reconcile of one key took, by kind.",
    ["kind"],
    buckets=_RECONCILE_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_ERRORS: Final = Counter(
    "kapsa_reconcile_errors_total",
    "Reconciles that raised and were retried with backoff, by kind.",
    ["kind"],
    registry=REGISTRY,
)
TRANSITIONS: Final = Counter(
    "kapsa_transitions_total",
    "State machine transitions recorded, by kind, source and destination state.",
    ["kind", "from", "to"],
    registry=REGISTRY,
)
POLLS: Final = Counter(
    "kapsa_polls_total",
    "Branch listings of Projects' repositories, by result (changed, unchanged, error).",
    ["result"],
    registry=REGISTRY,
)
POLL_DURATION: Final = Histogram(
    "kapsa_poll_duration_seconds",
    "Time one branch listing took, failed ones included.",
    buckets=_POLL_BUCKETS,
    registry=REGISTRY,
)
BUILDS_STARTED: Final = Counter(
    "kapsa_builds_started_total",
    "Builds Kapsa started (a kpack Image applied for a new commit, or a build Job created), "
    "by type (standard, preview).",
    ["type"],
    registry=REGISTRY,
)
BUILDS_FINISHED: Final = Counter(
    "kapsa_builds_finished_total",
    "Builds Kapsa saw end, by type (standard, preview) and outcome (succeeded, failed).",
    ["type", "outcome"],
    registry=REGISTRY,
)
BUILD_DURATION: Final = Histogram(
    "kapsa_build_duration_seconds",
    "From when Kapsa saw a build running to when it saw it end, by type and outcome.",
    ["type", "outcome"],
    buckets=_BUILD_BUCKETS,
    registry=REGISTRY,
)
QUEUE_DEPTH: Final = Gauge(
    "kapsa_queue_depth",
    "Keys waiting in the work queue (not counting those being reconciled or delayed).",
    registry=REGISTRY,
)
WEBHOOKS: Final = Counter(
    "kapsa_webhooks_total",
    "Push webhooks received, by provider and result (accepted or why refused).",
    ["provider", "result"],
    registry=REGISTRY,
)


#: Every phase an Environment can be in, and its two types: the series of kapsa_environments.
PHASES: Final = ("Pending", "Building", "Deploying", "Running", "Failed", "Expiring")
ENVIRONMENT_TYPES: Final = ("standard", "preview")


class _EnvironmentCount(Collector):
    """kapsa_environments{phase, type}, counted from the operator's cache at scrape time."""

    def __init__(self) -> None:
        self.count: Callable[[], Mapping[tuple[str, str], int]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kapsa_environments",
            "Environments in the operator's cache, by phase and type (standard, preview).",
            labels=["phase", "type"],
        )
        counted = self.count()
        for phase in PHASES:
            for type_ in ENVIRONMENT_TYPES:
                family.add_metric([phase, type_], float(counted.get((phase, type_), 0)))
        yield family


_ENVIRONMENTS: Final = _EnvironmentCount()
REGISTRY.register(_ENVIRONMENTS)


def _precreate() -> None:
    """Series that exist from the start, at 0, so that an alert on their rate sees the first one."""
    for kind in KINDS:
        RECONCILE_DURATION.labels(kind=kind)
        RECONCILE_ERRORS.labels(kind=kind)
        for result in ("success", "requeue", "error"):
            RECONCILE_TOTAL.labels(kind=kind, result=result)
    for poll in ("changed", "unchanged", "error"):
        POLLS.labels(result=poll)
    for type_ in ENVIRONMENT_TYPES:
        BUILDS_STARTED.labels(type=type_)
        for outcome in ("succeeded", "failed"):
            BUILDS_FINISHED.labels(type=type_, outcome=outcome)
            BUILD_DURATION.labels(type=type_, outcome=outcome)
    for provider in ("github", "gitea", "gitlab"):
        for webhook in ("accepted", "bad_signature", "replayed"):
            WEBHOOKS.labels(provider=provider, result=webhook)


_precreate()


def observe_reconcile(*, kind: str, result: ReconcileResult, seconds: float) -> None:
    """One reconcile of one key finished; an error also counts in kapsa_reconcile_errors_total."""
    RECONCILE_TOTAL.labels(kind=kind, result=result).inc()
    RECONCILE_DURATION.labels(kind=kind).observe(seconds)
    if result == "error":
        RECONCILE_ERRORS.labels(kind=kind).inc()


def count_transition(*, kind: str, source: str, dest: str) -> None:
    """A transition was recorded (status written, ledger appended)."""
    TRANSITIONS.labels(kind=kind, **{"from": source, "to": dest}).inc()


def observe_poll(*, result: PollResult, seconds: float) -> None:
    POLLS.labels(result=result).inc()
    POLL_DURATION.observe(seconds)


@contextmanager
def timed_poll() -> Iterator[Callable[[PollResult], None]]:
    """Time a listing; the body reports its result, and an exception counts as an error.

    ```
    with timed_poll() as done:
        _, changed = sources.poll(ctx, project)
        done("changed" if changed else "unchanged")
    ```
    """
    started = time.perf_counter()
    outcome: list[PollResult] = []
    try:
        yield outcome.append
    except BaseException:
        outcome[:] = ["error"]
        raise
    finally:
        observe_poll(result=outcome[-1] if outcome else "error", seconds=_since(started))


def _build_type(preview: bool) -> BuildType:
    return "preview" if preview else "standard"


def count_build_started(*, preview: bool) -> None:
    BUILDS_STARTED.labels(type=_build_type(preview)).inc()


def count_build_finished(*, preview: bool, outcome: BuildOutcome, seconds: float | None) -> None:
    """A build's end, seen once; `seconds` since it was seen running, when that is known."""
    type_ = _build_type(preview)
    BUILDS_FINISHED.labels(type=type_, outcome=outcome).inc()
    if seconds is not None:
        BUILD_DURATION.labels(type=type_, outcome=outcome).observe(max(seconds, 0.0))


def track_environments(count: Callable[[], Mapping[tuple[str, str], int]]) -> None:
    """Count environments by (phase, type) at scrape time, from the caller's cache."""
    _ENVIRONMENTS.count = count


def track_queue_depth(depth: Callable[[], int]) -> None:
    """Read the depth at scrape time: nothing to update on every add and get."""
    QUEUE_DEPTH.set_function(lambda: float(depth()))


def count_webhook(*, provider: WebhookProvider, result: WebhookResult) -> None:
    WEBHOOKS.labels(provider=provider, result=result).inc()


def _since(started: float) -> float:
    return time.perf_counter() - started
