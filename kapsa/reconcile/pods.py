"""What an Environment's pods say about a rollout, in the kubelet's own words.

A Deployment's status says only how many pods are ready. Why the others are not (an image that
cannot be pulled, an app that exits, a Secret that is missing, a probe that never passes) is
written by the kubelet into each pod's container statuses, and for probes into Events. This
reads them, so the Environment's conditions carry that reason and message instead of a bare
"not ready".
"""

from __future__ import annotations

from dataclasses import dataclass

from kapsa.k8s.client import JSON

#: Container waiting reasons that mean the pod will not become ready without a change.
PROBLEM_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: The reason Kapsa gives a running container that its readiness probe does not pass; the
#: kubelet's Event for the failed probe (reason Unhealthy) supplies the message.
UNHEALTHY = "Unhealthy"
UNSCHEDULABLE = "Unschedulable"


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str
    pod: str


def pod_problem(pods: list[JSON], *, image: str) -> PodProblem | None:
    """The first thing that keeps a pod of `image` from being ready, or None.

    Pods of other images (the old ReplicaSet's during a rollout) and pods being deleted are
    not the rollout's concern.
    """
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        containers = pod["spec"].get("containers") or []
        if not containers or containers[0].get("image") != image:
            continue
        problem = _problem(pod)
        if problem is not None:
            return problem
    return None


def _problem(pod: JSON) -> PodProblem | None:
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return PodProblem(
                reason=condition.get("reason") or UNSCHEDULABLE,
                message=condition.get("message", ""),
                pod=name,
            )
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in PROBLEM_REASONS:
            return PodProblem(
                reason=waiting["reason"],
                message=_with_last_exit(waiting.get("message", ""), container),
                pod=name,
            )
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            return PodProblem(
                reason=terminated.get("reason") or "Error",
                message=f"the app exited (exit code {terminated.get('exitCode')})",
                pod=name,
            )
        if state.get("running") and not container.get("ready"):
            return PodProblem(
                reason=UNHEALTHY, message="the readiness probe does not pass yet", pod=name
            )
    return None


def _with_last_exit(message: str, container: JSON) -> str:
    """A crash loop's message says only "back-off"; the last exit says what happened."""
    last = (container.get("lastState") or {}).get("terminated") or {}
    if not last:
        return message
    exit_text = f"last exit code {last.get('exitCode')} ({last.get('reason', 'Error')})"
    return f"{message}; {exit_text}" if message else exit_text


def probe_message(events: list[JSON], *, pod: str) -> str | None:
    """The newest failed-probe Event of `pod`, as `kubectl describe pod` shows it."""
    failures = [
        event
        for event in events
        if event.get("reason") == UNHEALTHY
        and (event.get("involvedObject") or {}).get("name") == pod
    ]
    if not failures:
        return None
    newest = max(failures, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return str(newest.get("message", "")).strip() or None
