"""Reconcile an Environment: which image it should run, its Deployment, Service and Ingress.

The desired image comes from the Project's status (the newest image built for the branch);
environments without autoSync keep the image they run. A failed build never reaches here as an
image, so environments stay on their last good one.
"""

from __future__ import annotations

import base64
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from kapsa.api.common import parse_duration
from kapsa.errors import KapsaError
from kapsa.k8s import manifests
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.resources import (
    CLUSTER_ISSUER,
    DEPLOYMENT,
    DOMAIN_POOL,
    ENVIRONMENT,
    INGRESS,
    PROJECT,
    REGISTRY,
    SECRET,
    SERVICE,
)
from kapsa.ledger.deployments import deployments_from
from kapsa.machines import (
    DELETED,
    BuildState,
    EnvironmentObservation,
    Transition,
    decide_environment,
)
from kapsa.machines.base import format_duration
from kapsa.machines.environment import AUTO_ROLLBACK, PROMOTION, ROLLBACK
from kapsa.reconcile.conditions import is_true, set_condition
from kapsa.reconcile.context import Context, parse_time, rfc3339
from kapsa.reconcile.project import FINALIZER, Result
from kapsa.reconcile.recorder import (
    LedgerCatchUp,
    emit_event,
    entry_from_status,
    last_transition,
    write_status,
)
from kapsa.registry import credentials_from_secret, image_exists

log = logging.getLogger(__name__)


class EnvironmentReconciler:
    def __init__(self, ctx: Context, *, catch_up: LedgerCatchUp) -> None:
        self.ctx = ctx
        self.catch_up = catch_up

    def reconcile(self, namespace: str, name: str) -> Result:
        ctx = self.ctx
        env = ctx.caches[ENVIRONMENT].get(name, namespace)
        if env is None:
            return Result()
        project_name = env["spec"]["project"]
        self.catch_up.ensure(ctx, env, project=project_name)
        project = ctx.caches[PROJECT].get(project_name)
        if env["metadata"].get("deletionTimestamp"):
            return self._finalize(env, project_name)
        if project is None or project["metadata"].get("deletionTimestamp"):
            return Result()
        return self._reconcile(env, project)

    def _reconcile(self, env: JSON, project: JSON) -> Result:  # noqa: PLR0915
        ctx = self.ctx
        now = ctx.now()
        stamp = rfc3339(now)
        meta = env["metadata"]
        spec = env["spec"]
        old = env.get("status") or {}
        status: JSON = dict(old)
        conditions: list[JSON] = list(old.get("conditions", []))
        generation = meta.get("generation")
        app = project["spec"].get("app", {})
        preview = spec.get("type") == "preview"

        def cond(type_: str, ok: bool | None, reason: str, message: str = "") -> None:
            nonlocal conditions
            conditions = set_condition(
                conditions,
                type_=type_,
                status=ok,
                reason=reason,
                message=message,
                generation=generation,
                now=stamp,
            )

        # What it should run: the newest image built for its branch.
        branch: JSON = next(
            (
                b
                for b in (project.get("status") or {}).get("branches", [])
                if b["name"] == spec["branch"]
            ),
            {},
        )
        previews = {p["name"]: p for p in (project.get("status") or {}).get("previews", [])}
        if preview:
            branch = previews.get(meta["name"], {})
        built_image = branch.get("image")
        built_commit = branch.get("builtCommit")
        current = old.get("image")
        target = old.get("targetImage")
        quarantined = {q["commit"] for q in old.get("quarantinedCommits", [])}
        follows = spec.get("autoSync", True) and built_commit not in quarantined
        if current is None or (follows and built_image):
            desired, desired_commit = built_image, built_commit
        elif target:
            # A rollout that is not the branch's newest (a release, or the newest before it was
            # quarantined) keeps its aim until it ends.
            desired, desired_commit = target, old.get("targetCommit")
        else:
            desired, desired_commit = current, old.get("commit")
        # A standard environment exists only once its branch has an image, so "no image" here
        # means the Project's status has not reached the cache yet: wait, do not call it Building.
        build_state = (
            BuildState(branch.get("buildState", "None"))
            if preview
            else (BuildState.SUCCEEDED if built_image else BuildState.NONE)
        )

        # Where it answers: a host from the pool, never one another environment holds.
        blocked = ""
        blocked_message = ""
        pool_name = project["spec"]["domainPoolRef"]["name"]
        pool = ctx.caches[DOMAIN_POOL].get(pool_name)
        host = None
        if pool is None:
            blocked, blocked_message = "DomainPoolNotFound", f"DomainPool {pool_name} not found"
        else:
            host = f"{meta['name']}.{project['metadata']['name']}.{pool['spec']['baseDomain']}"
            # Allocated once: the scan over every Environment runs only for a new host.
            holder = None if old.get("host") == host else self._host_holder(host, env)
            if holder:
                blocked, blocked_message = "HostConflict", f"host {host} is taken by {holder}"
                host = None
            elif not is_true(pool, "Ready"):
                blocked = "DomainPoolNotReady"
                blocked_message = (
                    f"DomainPool {pool_name} is not Ready (its ClusterIssuer "
                    "is missing or not ready)"
                )
        if preview and not old.get("expiresAt"):
            # Set at creation; each rollout of a new commit moves it on (TTL is inactivity).
            status["expiresAt"] = rfc3339(now + _ttl(project))
        if host:
            status["host"] = host
            status["url"] = f"https://{host}"

        # A release (someone's rollback or promotion, or the auto-rollback policy) overrides
        # what the branch wants; it is committed to status only if the machine starts it.
        release = self._release(env, project, old, now=now)
        if release is not None and release.outcome == ACCEPTED:
            desired, desired_commit = release.image, release.commit
        wants_rollout = desired is not None and desired != current
        if not blocked and (wants_rollout or old.get("phase") in (None, "Pending")) and desired:
            missing = self._missing_secrets(env)
            if missing:
                blocked = "SecretNotFound"
                blocked_message = (
                    "Secret "
                    + ", ".join(missing)
                    + f" not found in namespace {meta['namespace']}; the rollout waits for it"
                )

        deployment = ctx.caches[DEPLOYMENT].get(meta["name"], meta["namespace"])
        # Ready means ready on the image wanted now: the rollout's target, else the desired one.
        ready = _deployment_ready(deployment, target or desired)
        deadline = parse_duration(app.get("rolloutDeadline", "10m"))
        observation = EnvironmentObservation(
            now=now,
            preview=preview,
            expires_at=parse_time(old.get("expiresAt")),
            branch_gone=bool(branch.get("gone")) if preview else False,
            build=build_state,
            build_message=branch.get("message", ""),
            desired_image=desired,
            current_image=current,
            target_image=target,
            deployment_ready=ready,
            rollout_started_at=parse_time(old.get("rolloutStartedAt")),
            rollout_deadline=deadline,
            blocked_reason=blocked,
            release=release.kind if release is not None and release.outcome == ACCEPTED else "",
            release_message=release.message if release is not None else "",
        )
        phase = old.get("phase", "Pending")
        transition = decide_environment(phase, observation)
        commit_for_row = old.get("commit")
        image_for_row = current
        source = old.get("targetSource")
        if release is not None:
            source = (
                self._answer(
                    release, transition, status, stamp=stamp, blocked=blocked_message, env=env
                )
                or source
            )
        if transition is not None:
            phase = transition.dest
            if transition.trigger in _STARTS and transition.dest == "Deploying":
                status["targetImage"] = desired
                status["targetCommit"] = desired_commit
                status["rolloutStartedAt"] = stamp
                if transition.trigger in _RELEASES:
                    status["targetSource"] = source
                else:
                    status.pop("targetSource", None)
                    source = None
                target = desired
                commit_for_row, image_for_row = desired_commit, desired
            elif transition.dest == "Running":
                # Readiness was judged on the rollout's target, else on the desired image (a
                # Deployment found ready before its rollout was recorded, after a lost write).
                status["image"] = target or desired
                status["commit"] = old.get("targetCommit") if target else desired_commit
                for key in ("targetImage", "targetCommit", "rolloutStartedAt", "targetSource"):
                    status.pop(key, None)
                commit_for_row, image_for_row = status.get("commit"), status["image"]
                if preview:
                    status["expiresAt"] = rfc3339(now + _ttl(project))
            elif transition.trigger == "rollout_deadline_exceeded" and target:
                # The row names the image that failed, not the one still serving: the ledger's
                # evidence for the serving image (rollback, promotion) must stay intact.
                commit_for_row, image_for_row = old.get("targetCommit"), target
        status["phase"] = phase

        # Conditions.
        if blocked:
            cond("Progressing", False, blocked, blocked_message)
        elif phase == "Deploying":
            cond("Progressing", True, "RolloutStarted", f"rolling out {status.get('targetImage')}")
        elif phase == "Failed":
            cond(
                "Progressing",
                False,
                transition.reason if transition else _reason(old, "Progressing") or "Failed",
                transition.message if transition else old.get("message", ""),
            )
        else:
            cond("Progressing", True, "Idle", "nothing to roll out")
        if phase == "Running":
            cond("Ready", True, "Running", f"{status.get('url')} runs {status.get('image')}")
        else:
            cond(
                "Ready",
                False,
                blocked or phase,
                blocked_message or (transition.message if transition else phase),
            )
        release_condition = _release_condition(status.get("release"))
        if release_condition is not None:
            cond("ReleaseRefused", *release_condition)
        status["conditions"] = conditions
        status["observedGeneration"] = generation
        if transition is not None:
            status["message"] = transition.message
        stored = write_status(
            ctx,
            ENVIRONMENT,
            env,
            status,
            transition=transition,
            project=project["metadata"]["name"],
            catch_up=self.catch_up,
            commit=commit_for_row,
            image=image_for_row,
            source=source if transition is not None and transition.trigger in _SOURCED else None,
        )
        # Act, once the decision is on record: a crash from here on is repaired by the next
        # pass from status, never lost. The children are for what it runs now (or moves to).
        repaired: list[str] = []
        image_to_run = status.get("targetImage") or status.get("image")
        if image_to_run and host and phase in ("Deploying", "Running", "Failed") and pool:
            repaired = self._ensure_children(
                env,
                project,
                pool,
                host=host,
                image=image_to_run,
                commit=status.get("targetCommit") or status.get("commit"),
            )

        if repaired and transition is None:
            self._record_repair(stored or env, project["metadata"]["name"], repaired)
        if phase == "Expiring":
            return Result()  # the Project deletes it, noting why (flow 4)
        return Result(requeue_after=self._next_deadline(status, now, deadline))

    # -- releases: rollback, auto-rollback, promotion -----------------------------------------

    def _release(self, env: JSON, project: JSON, old: JSON, *, now: datetime) -> _Release | None:
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
    ) -> _Release:
        rollback_to, promote_from = request.get("rollbackTo"), request.get("promoteFrom")
        kind = ROLLBACK if rollback_to else PROMOTION
        refuse = partial(_Release, kind=kind, outcome=REFUSED, request=request)
        if bool(rollback_to) == bool(promote_from):
            return refuse(message="spec.release needs exactly one of rollbackTo and promoteFrom")
        phase = old.get("phase", "Pending")
        name = env["metadata"]["name"]
        if phase == "Deploying":
            return _Release(
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
    ) -> _Release:
        name = env["metadata"]["name"]
        refuse = partial(
            _Release, kind=ROLLBACK, outcome=REFUSED, request=request, source=SOURCE_ROLLBACK
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
        return _Release(
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
    ) -> _Release:
        name = env["metadata"]["name"]
        source = f"promote:{source_env}"
        refuse = partial(_Release, kind=PROMOTION, outcome=REFUSED, request=request, source=source)
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
        return _Release(
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

    def _auto_rollback(self, env: JSON, project: JSON, old: JSON) -> _Release | None:
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
        return _Release(
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

    def _answer(
        self,
        release: _Release,
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
        started = transition is not None and transition.trigger in _RELEASES
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
        ref = registry["spec"].get("credentialsSecretRef") or {}
        secret = ctx.secret(ref["name"], ref.get("namespace")) if ref.get("name") else None
        credentials = None
        if secret is not None:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            credentials = credentials_from_secret(
                secret_type=secret.get("type", ""), data=data, server=server
            )
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

    # -- deletion ------------------------------------------------------------------------------

    def _finalize(self, env: JSON, project: str) -> Result:
        ctx = self.ctx
        meta = env["metadata"]
        phase = (env.get("status") or {}).get("phase", "Pending")
        observation = EnvironmentObservation(now=ctx.now(), deleting=True, finalized=True)
        transition = decide_environment(phase, observation)
        if transition is not None and transition.dest != DELETED:
            status = dict(env.get("status") or {})
            status["phase"] = transition.dest
            write_status(
                ctx,
                ENVIRONMENT,
                env,
                status,
                transition=transition,
                project=project,
                catch_up=self.catch_up,
            )
            return Result()  # the watch event of that write carries on to the final step
        if transition is not None:
            seq = int(((env.get("status") or {}).get("lastTransition") or {}).get("seq", 0)) + 1
            last = last_transition(
                transition=transition, seq=seq, at=rfc3339(ctx.now()), commit=None, image=None
            )
            ctx.ledger.append(entry_from_status(env, last, project=project))
        finalizers = [f for f in meta.get("finalizers", []) if f != FINALIZER]
        try:
            ctx.kube.merge_patch(
                ENVIRONMENT,
                meta["name"],
                {"metadata": {"finalizers": finalizers}},
                namespace=meta["namespace"],
            )
        except ApiError as error:
            if error.status != 404:
                raise
        ctx.enqueue(("Project", project))
        return Result()

    # -- pieces --------------------------------------------------------------------------------

    def _host_holder(self, host: str, env: JSON) -> str | None:
        for other in self.ctx.caches[ENVIRONMENT].items():
            if other["metadata"]["uid"] == env["metadata"]["uid"]:
                continue
            if (other.get("status") or {}).get("host") == host:
                m = other["metadata"]
                return f"Environment {m['namespace']}/{m['name']}"
        return None

    def _missing_secrets(self, env: JSON) -> list[str]:
        namespace = env["metadata"]["namespace"]
        return [
            ref["name"]
            for ref in env["spec"].get("secretRefs", [])
            if self.ctx.kube.get(SECRET, ref["name"], namespace=namespace) is None
        ]

    def _ensure_children(
        self, env: JSON, project: JSON, pool: JSON, *, host: str, image: str, commit: str | None
    ) -> list[str]:
        """Apply what differs from what should be; returns the kinds that had to be put back."""
        ctx = self.ctx
        app = project["spec"].get("app", {})
        port = int(app.get("port", 8080))
        secret_names = [r["name"] for r in env["spec"].get("secretRefs", [])]
        issuer = pool["spec"]["clusterIssuerRef"]["name"]
        wanted = [
            (
                DEPLOYMENT,
                manifests.deployment(
                    environment=env,
                    image=image,
                    commit=commit,
                    port=port,
                    replicas=int(app.get("replicas", 1)),
                    env=app.get("env", []),
                    secret_names=secret_names,
                    health_path=app.get("healthPath"),
                ),
            ),
            (SERVICE, manifests.service(environment=env, port=port)),
            (
                INGRESS,
                manifests.ingress(
                    environment=env,
                    host=host,
                    ingress_class=pool["spec"].get("ingressClassName", "nginx"),
                    cluster_issuer=issuer,
                ),
            ),
        ]
        changed = []
        meta = env["metadata"]
        for resource, manifest in wanted:
            live = ctx.caches[resource].get(meta["name"], meta["namespace"])
            if live is None or not manifests.contains(live, manifest):
                ctx.kube.apply(resource, manifest)
                changed.append(resource.kind)
        return changed

    def _record_repair(self, env: JSON, project: str, kinds: list[str]) -> None:
        """A child put back without a phase change is still history: one ledger row."""
        status = env.get("status") or {}
        phase = status.get("phase", "Pending")
        if phase not in ("Running",):
            return
        transition = Transition(
            kind="Environment",
            source=phase,
            dest=phase,
            trigger="drift_repaired",
            reason="DriftRepaired",
            message="put back " + ", ".join(kinds) + " changed outside Kapsa",
        )
        write_status(
            self.ctx,
            ENVIRONMENT,
            env,
            dict(status),
            transition=transition,
            project=project,
            catch_up=self.catch_up,
            commit=status.get("commit"),
            image=status.get("image"),
        )

    @staticmethod
    def _next_deadline(status: JSON, now: datetime, deadline: timedelta) -> float | None:
        waits = []
        started = parse_time(status.get("rolloutStartedAt"))
        if status.get("phase") == "Deploying" and started:
            waits.append((started + deadline - now).total_seconds() + 0.5)
        expires = parse_time(status.get("expiresAt"))
        if expires:
            waits.append((expires - now).total_seconds() + 0.5)
        return max(min(waits), 0.5) if waits else None


def _ttl(project: JSON) -> timedelta:
    return parse_duration((project["spec"].get("previewEnvironments") or {}).get("ttl", "168h"))


def _deployment_ready(deployment: JSON | None, image: str | None) -> bool:
    """Ready as the deployment controller reports it, for the image Kapsa asked for."""
    if deployment is None or image is None:
        return False
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if not containers or containers[0].get("image") != image:
        return False
    status = deployment.get("status") or {}
    replicas = deployment["spec"].get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= replicas
        and status.get("availableReplicas", 0) >= replicas
        and status.get("readyReplicas", 0) >= replicas
    )


def _reason(obj: JSON, type_: str) -> str:
    for entry in obj.get("conditions", []):
        if entry.get("type") == type_:
            return str(entry.get("reason", ""))
    return ""


_ = CLUSTER_ISSUER


ACCEPTED, REFUSED, WAITING = "Accepted", "Refused", "Waiting"
SOURCE_ROLLBACK, SOURCE_AUTO_ROLLBACK = "rollback", "auto-rollback"
DEFAULT_MIN_READY = "10m"
#: Quarantined commits kept per environment: enough for any incident, bounded for etcd.
QUARANTINE_KEPT = 20
_RELEASES = ("rollback_started", "auto_rollback", "promotion_started")
_STARTS = ("rollout_started", "build_succeeded", *_RELEASES)
#: Rows that carry what started the rollout they belong to.
_SOURCED = (*_RELEASES, "rollout_ready", "rollout_deadline_exceeded")


@dataclass(frozen=True, kw_only=True)
class _Release:
    """A release checked and ready to answer: accepted (with its image), refused, or waiting."""

    kind: str
    outcome: str
    message: str
    request: JSON | None
    source: str | None = None
    commit: str | None = None
    image: str | None = None
    quarantine: str | None = None


def _quarantine(status: JSON, release: _Release, *, stamp: str) -> None:
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


def _release_condition(answer: JSON | None) -> tuple[bool, str, str] | None:
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
