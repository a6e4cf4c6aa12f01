"""Release control: rollback with quarantine, automatic rollback, promotion on evidence.

A release is a person's request (`spec.release`, written by `kapsa rollback`/`kapsa promote` or
kubectl) or the auto-rollback policy acting on a missed deadline. Every one is checked here, in
the operator, against the ledger (did that image run ready there, and for how long) and the
registry (is it still there), so kubectl users meet the same checks as the command line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from kapsa.api.common import parse_duration
from kapsa.errors import KapsaError
from kapsa.k8s.client import JSON
from kapsa.k8s.resources import ENVIRONMENT, REGISTRY
from kapsa.ledger.deployments import deployments_from
from kapsa.machines import Transition
from kapsa.machines.base import format_duration
from kapsa.machines.environment import AUTO_ROLLBACK, PROMOTION, ROLLBACK
from kapsa.reconcile.builds import registry_credentials
from kapsa.reconcile.context import Context, rfc3339
from kapsa.reconcile.recorder import emit_event
from kapsa.registry import image_exists


class Releases:
    """Picks the release an Environment should act on, and records the answer in its status."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def pick(self, env: JSON, project: JSON, old: JSON, *, now: datetime) -> Release | None:
        """The release this reconcile should act on, already checked; None if there is none.

        A person's request (spec.release) is answered once; the auto-rollback policy acts on a
        rollout that has just missed its deadline. Both are checked against the ledger (and the
        registry) here, in the operator, so a request written with kubectl gets the same checks
        as one from the command line.
        """
        request = env["spec"].get("release")
        answered = old.get("release") or {}
        fresh = request and (
            answered.get("request") != request or answered.get("outcome") == WAITING
        )
        if fresh:
            return self._requested(env, project, old, request, now=now)
        return self._auto_rollback(env, project, old)

    def _requested(
        self, env: JSON, project: JSON, old: JSON, request: JSON, *, now: datetime
    ) -> Release:
        rollback_to, promote_from = request.get("rollbackTo"), request.get("promoteFrom")
        kind = ROLLBACK if rollback_to else PROMOTION
        refuse = partial(Release, kind=kind, outcome=REFUSED, request=request)
        if bool(rollback_to) == bool(promote_from):
            return refuse(message="spec.release needs exactly one of rollbackTo and promoteFrom")
        phase = old.get("phase", "Pending")
        name = env["metadata"]["name"]
        if phase == "Deploying":
            return Release(
                kind=kind,
                outcome=WAITING,
                request=request,
                message=f"{name} is rolling out {old.get('targetImage')}; the "
                f"{'rollback' if rollback_to else 'promotion'} starts when that "
                "rollout ends (ready, or failed at its deadline)",
            )
        if phase not in ("Running", "Failed") or not old.get("image"):
            return refuse(message=f"{name} has not run any image yet ({phase})")
        if rollback_to:
            return self._rollback(env, project, old, request, commit=str(rollback_to))
        return self._promotion(env, project, old, request, source_env=str(promote_from), now=now)

    def _rollback(
        self, env: JSON, project: JSON, old: JSON, request: JSON, *, commit: str
    ) -> Release:
        name = env["metadata"]["name"]
        refuse = partial(
            Release, kind=ROLLBACK, outcome=REFUSED, request=request, source=SOURCE_ROLLBACK
        )
        spans = self.ctx.ledger.deployments(project=project["metadata"]["name"], environment=name)
        ran = [d for d in spans if d.commit and d.commit.startswith(commit) and d.image]
        good = [d for d in ran if d.ready]
        if len({d.commit for d in good}) > 1:
            return refuse(
                message=f"{commit} names more than one commit that ran in {name}; "
                "give more of the commit id"
            )
        if not good:
            never = "ran in" if ran else "never ran in"
            return refuse(
                message=f"commit {commit} {never} {name}"
                + (" but was not ready there" if ran else "")
                + "; a rollback goes only to a commit the ledger shows Running and "
                "ready in this environment (see `kapsa history --deployments`)"
            )
        chosen = good[-1]
        assert chosen.image is not None
        running_now = old.get("targetImage") if old.get("phase") == "Failed" else old["image"]
        from_commit = old.get("targetCommit") if old.get("phase") == "Failed" else old["commit"]
        if chosen.image == running_now:
            return refuse(
                message=f"{name} already runs {_short(chosen.commit)}; nothing to roll back"
            )
        missing = self._not_in_registry(project, chosen.image)
        if missing:
            return refuse(message=missing, commit=chosen.commit, image=chosen.image)
        quarantine = from_commit if from_commit != chosen.commit else None
        note = f"; commit {_short(quarantine)} is quarantined here" if quarantine else ""
        return Release(
            kind=ROLLBACK,
            outcome=ACCEPTED,
            request=request,
            source=SOURCE_ROLLBACK,
            commit=chosen.commit,
            image=chosen.image,
            quarantine=quarantine,
            message=f"Rolling back to {_short(chosen.commit)} ({chosen.image}), which ran ready "
            f"here from {rfc3339(chosen.started)}{note}.",
        )

    def _promotion(
        self,
        env: JSON,
        project: JSON,
        old: JSON,
        request: JSON,
        *,
        source_env: str,
        now: datetime,
    ) -> Release:
        name = env["metadata"]["name"]
        source = f"promote:{source_env}"
        refuse = partial(Release, kind=PROMOTION, outcome=REFUSED, request=request, source=source)
        if source_env == name:
            return refuse(message=f"{name} cannot be promoted from itself")
        if env["spec"].get("autoSync", True):
            return refuse(
                message=f"{name} follows branch {env['spec']['branch']} by itself "
                "(autoSync: true), which would replace a promoted image at the next "
                "commit; promote into an environment with autoSync: false"
            )
        other = self.ctx.caches[ENVIRONMENT].get(source_env, env["metadata"]["namespace"])
        if other is None or other["spec"].get("project") != env["spec"]["project"]:
            return refuse(message=f"{env['spec']['project']} has no environment {source_env}")
        other_status = other.get("status") or {}
        image, commit = other_status.get("image"), other_status.get("commit")
        if not image:
            return refuse(message=f"{source_env} runs no image yet")
        minimum = parse_duration(request.get("minReady") or DEFAULT_MIN_READY)
        since = self._ready_since(project["metadata"]["name"], source_env, image)
        if since is None:
            return refuse(
                commit=commit,
                image=image,
                message=f"the ledger does not show {_short(commit)} ({image}) Running "
                f"and ready in {source_env} now",
            )
        ready_for = now - since
        if ready_for < minimum:
            left = format_duration(math.ceil((minimum - ready_for).total_seconds()))
            return refuse(
                commit=commit,
                image=image,
                message=f"{_short(commit)} has been ready in {source_env} for "
                f"{format_duration(ready_for.total_seconds())}, less than the "
                f"{format_duration(minimum.total_seconds())} a promotion needs: "
                f"{left} left",
            )
        if image == old.get("image") and old.get("phase") == "Running":
            return refuse(
                commit=commit, image=image, message=f"{name} already runs {_short(commit)}"
            )
        return Release(
            kind=PROMOTION,
            outcome=ACCEPTED,
            request=request,
            source=source,
            commit=commit,
            image=image,
            message=f"Promoting {_short(commit)} ({image}) from {source_env}, where it has been "
            f"ready for {format_duration(ready_for.total_seconds())}.",
        )

    def _ready_since(self, project: str, environment: str, image: str) -> datetime | None:
        """Since when the ledger shows `image` Running and ready in `environment`, unbroken."""
        entries = self.ctx.ledger.history(project=project, environment=environment)
        spans = deployments_from(entries)
        if (
            not spans
            or spans[-1].ended is not None
            or spans[-1].image != image
            or not spans[-1].ready
        ):
            return None
        since = spans[-1].started
        for entry in entries:
            # A return to Running (after a failed re-rollout of the same image) restarts the
            # clock: the evidence is time spent ready without a break.
            if (
                entry.at >= since
                and entry.to_state == "Running"
                and entry.from_state != "Running"
                and entry.image in (None, image)
            ):
                since = entry.at
        return since

    def _auto_rollback(self, env: JSON, project: JSON, old: JSON) -> Release | None:
        """A rollout that has just missed its deadline goes back to the last good image."""
        last = old.get("lastTransition") or {}
        if old.get("phase") != "Failed" or last.get("trigger") != "rollout_deadline_exceeded":
            return None
        if not _auto_rollback_enabled(env, project):
            return None
        good, failed = old.get("image"), old.get("targetImage")
        if not good or not failed or good == failed:
            return None
        quarantine = old.get("targetCommit")
        if quarantine == old.get("commit"):
            quarantine = None
        note = f"; commit {_short(quarantine)} is quarantined here" if quarantine else ""
        return Release(
            kind=AUTO_ROLLBACK,
            outcome=ACCEPTED,
            request=None,
            source=SOURCE_AUTO_ROLLBACK,
            commit=old.get("commit"),
            image=good,
            quarantine=quarantine,
            message=f"The rollout of {_short(old.get('targetCommit'))} missed its deadline; "
            f"rolling back to {_short(old.get('commit'))} ({good}){note}.",
        )

    def answer(
        self,
        release: Release,
        transition: Transition | None,
        status: JSON,
        *,
        stamp: str,
        blocked: str,
        env: JSON,
    ) -> str | None:
        """Write the answer to a release into status; the source when the machine started it.

        Accepted counts only once the rollout has started: a release the machine could not
        start (the domain or a Secret missing) waits in status and is tried again.
        """
        started = transition is not None and transition.trigger in RELEASE_TRIGGERS
        outcome, message = release.outcome, release.message
        if outcome == ACCEPTED and not started:
            outcome = WAITING
            message = f"waits: {blocked or 'the rollout cannot start yet'}"
        if release.request is None:  # the auto-rollback policy: nothing to answer
            if started:
                _quarantine(status, release, stamp=stamp)
            return release.source if started else None
        answer = {
            "request": release.request,
            "outcome": outcome,
            "message": message,
            "source": release.source,
            "commit": release.commit,
            "image": release.image,
            "at": stamp,
        }
        answer = {k: v for k, v in answer.items() if v is not None}
        previous = status.get("release") or {}
        if {k: v for k, v in previous.items() if k != "at"} == {
            k: v for k, v in answer.items() if k != "at"
        }:
            return None  # the same answer again: keep its time, write nothing
        status["release"] = answer
        if started:
            _quarantine(status, release, stamp=stamp)
        elif outcome == REFUSED:
            emit_event(
                self.ctx, env, reason=_refused_reason(release.kind), message=message, warning=True
            )
        return release.source if started else None

    def _not_in_registry(self, project: JSON, image: str) -> str | None:
        """Why `image` cannot be rolled out again, or None when the registry still has it."""
        ctx = self.ctx
        registry_name = project["spec"]["build"]["registryRef"]["name"]
        registry = ctx.caches[REGISTRY].get(registry_name)
        if registry is None:
            return f"Registry {registry_name} does not exist, so {image} cannot be checked"
        server = registry["spec"]["server"]
        name, _, digest = image.partition("@")
        if not digest or not name.startswith(server + "/"):
            return f"{image} is not an image of Registry {registry_name} ({server})"
        credentials = registry_credentials(ctx, registry)
        try:
            found = image_exists(
                server=server,
                repository=name[len(server) + 1 :],
                digest=digest,
                credentials=credentials,
                insecure=bool(registry["spec"].get("insecure")),
                ca_bundle=ctx.settings.registry_ca_bundle,
                allow_private_hosts=ctx.settings.allow_private_hosts,
            )
        except KapsaError as error:
            return f"could not check that {image} is still in the registry: {error}"
        if not found:
            return f"{image} is no longer in the registry (deleted or garbage-collected)"
        return None


ACCEPTED, REFUSED, WAITING = "Accepted", "Refused", "Waiting"
SOURCE_ROLLBACK, SOURCE_AUTO_ROLLBACK = "rollback", "auto-rollback"
DEFAULT_MIN_READY = "10m"
#: Quarantined commits kept per environment: enough for any incident, bounded for etcd.
QUARANTINE_KEPT = 20
RELEASE_TRIGGERS = ("rollback_started", "auto_rollback", "promotion_started")
START_TRIGGERS = ("rollout_started", "build_succeeded", *RELEASE_TRIGGERS)
#: Rows that carry what started the rollout they belong to.
SOURCED_TRIGGERS = (*RELEASE_TRIGGERS, "rollout_ready", "rollout_deadline_exceeded")


@dataclass(frozen=True, kw_only=True)
class Release:
    """A release checked and ready to answer: accepted (with its image), refused, or waiting."""

    kind: str
    outcome: str
    message: str
    request: JSON | None
    source: str | None = None
    commit: str | None = None
    image: str | None = None
    quarantine: str | None = None


def _quarantine(status: JSON, release: Release, *, stamp: str) -> None:
    """Keep auto-sync off the commit rolled back from; releasing a commit lifts its quarantine."""
    kept = [
        q
        for q in status.get("quarantinedCommits", [])
        if q["commit"] not in (release.commit, release.quarantine)
    ]
    if release.quarantine:
        kept.append({"commit": release.quarantine, "reason": release.source or "", "at": stamp})
    status["quarantinedCommits"] = kept[-QUARANTINE_KEPT:]


def _auto_rollback_enabled(env: JSON, project: JSON) -> bool:
    """The Environment's own setting, else its entry in the Project."""
    own = env["spec"].get("autoRollback")
    if own is not None:
        return bool(own)
    template: JSON = next(
        (
            t
            for t in project["spec"].get("environments", [])
            if t["name"] == env["metadata"]["name"]
        ),
        {},
    )
    return bool(template.get("autoRollback", False))


def _refused_reason(kind: str) -> str:
    return "PromotionRefused" if kind == PROMOTION else "RollbackRefused"


def release_condition(answer: JSON | None) -> tuple[bool, str, str] | None:
    """ReleaseRefused: True with the reason while the latest request stands refused."""
    if not answer:
        return None
    kind = PROMOTION if answer["request"].get("promoteFrom") else ROLLBACK
    if answer["outcome"] == REFUSED:
        return True, _refused_reason(kind), answer.get("message", "")
    word = "Promotion" if kind == PROMOTION else "Rollback"
    return False, f"{word}{answer['outcome']}", answer.get("message", "")


def _short(commit: str | None) -> str:
    return (commit or "?")[:12]
