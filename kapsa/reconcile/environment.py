"""Reconcile an Environment: which image it should run, its Deployment, Service and Ingress.

The desired image comes from the Project's status (the newest image built for the branch);
environments without autoSync keep the image they run. A failed build never reaches here as an
image, so environments stay on their last good one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from kapsa.api.common import parse_duration
from kapsa.api.project import AppResources
from kapsa.k8s import manifests
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.quantity import canonical
from kapsa.k8s.resources import (
    DEPLOYMENT,
    DOMAIN_POOL,
    ENDPOINTS,
    ENVIRONMENT,
    EVENT,
    INGRESS,
    POD,
    PROJECT,
    SECRET,
    SERVICE,
)
from kapsa.machines import (
    DELETED,
    BuildState,
    EnvironmentObservation,
    Transition,
    decide_environment,
)
from kapsa.reconcile import tenancy
from kapsa.reconcile.conditions import is_true, set_condition
from kapsa.reconcile.context import Context, parse_time, rfc3339
from kapsa.reconcile.pods import UNHEALTHY, PodProblem, pod_problem, probe_message
from kapsa.reconcile.project import FINALIZER, Result
from kapsa.reconcile.recorder import (
    LedgerCatchUp,
    entry_from_status,
    last_transition,
    write_status,
)
from kapsa.reconcile.releases import (
    ACCEPTED,
    RELEASE_TRIGGERS,
    SOURCED_TRIGGERS,
    START_TRIGGERS,
    Releases,
    release_condition,
)

log = logging.getLogger(__name__)

#: While a rollout waits for a missing Secret, it looks again after a quarter of the time it has
#: waited, within these bounds: a Secret created a moment later is found within seconds, one
#: that stays missing costs a read every few seconds at most.
SECRET_RETRY_MIN, SECRET_RETRY_MAX = 1.0, 10.0
#: How soon to look again when the pods are ready but the Service does not route to them yet.
ENDPOINTS_RETRY = 1.0


class EnvironmentReconciler:
    def __init__(self, ctx: Context, *, catch_up: LedgerCatchUp) -> None:
        self.ctx = ctx
        self.catch_up = catch_up
        self.releases = Releases(ctx)

    def reconcile(self, namespace: str, name: str) -> Result:
        ctx = self.ctx
        env = ctx.caches[ENVIRONMENT].get(name, namespace)
        if env is None:
            return Result()
        project_name = env["spec"]["project"]
        project = ctx.caches[PROJECT].get(project_name)
        refusal = tenancy.environment_refusal(env, project)
        if refusal is not None:  # before the ledger: a claim on another Project writes nothing
            tenancy.refuse_environment(
                ctx, env, reason=refusal[0], message=refusal[1], finalizer=FINALIZER
            )
            return Result()
        self.catch_up.ensure(ctx, env, project=project_name)
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
        # An Environment, standard or preview, exists only once its branch has an image, so "no
        # image" here means the Project's status has not reached the cache yet: wait, do not
        # call it Building. Later builds of the branch do not concern it until they succeed.
        build_state = BuildState.SUCCEEDED if built_image else BuildState.NONE

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
            status["expiresAt"] = _expires(project, env, now=now)
        if host:
            status["host"] = host
            status["url"] = f"https://{host}"

        # A release (someone's rollback or promotion, or the auto-rollback policy) overrides
        # what the branch wants; it is committed to status only if the machine starts it.
        release = self.releases.pick(env, project, old, now=now)
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
        # Ready means ready on the image wanted now: the rollout's target, else the desired one,
        # by the kubelet's probes, with the old pods gone and the Service routing to the new.
        rollout_image = target or desired
        ready = _deployment_ready(deployment, rollout_image)
        routing_pending = False
        if ready and rollout_image and old.get("phase") != "Running":
            ready = self._service_routes(
                env, replicas=int(app.get("replicas", 1)), image=rollout_image
            )
            routing_pending = not ready
        problem = None if ready or not rollout_image else self._pod_problem(env, rollout_image)
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
            pods_problem=f"{problem.reason}: {problem.message}" if problem else "",
        )
        phase = old.get("phase", "Pending")
        transition = decide_environment(phase, observation)
        commit_for_row = old.get("commit")
        image_for_row = current
        source = old.get("targetSource")
        if release is not None:
            source = (
                self.releases.answer(
                    release, transition, status, stamp=stamp, blocked=blocked_message, env=env
                )
                or source
            )
        if transition is not None:
            phase = transition.dest
            if transition.trigger in START_TRIGGERS and transition.dest == "Deploying":
                status["targetImage"] = desired
                status["targetCommit"] = desired_commit
                status["rolloutStartedAt"] = stamp
                if transition.trigger in RELEASE_TRIGGERS:
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
                    status["expiresAt"] = _expires(project, env, now=now)
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
            # Short enough for `kubectl get`'s Message column; status.image has the digest.
            served = (status.get("commit") or "its image")[:12]
            cond("Ready", True, "Running", f"serves {served} at {status.get('url')}")
        elif problem is not None and not blocked:
            # The kubelet's reason and message, for the pods of the image being rolled out.
            cond("Ready", False, problem.reason, f"pod {problem.pod}: {problem.message}")
        else:
            cond(
                "Ready",
                False,
                blocked or phase,
                blocked_message or (transition.message if transition else phase),
            )
        refused = release_condition(status.get("release"))
        if refused is not None:
            cond("ReleaseRefused", *refused)
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
            source=source
            if transition is not None and transition.trigger in SOURCED_TRIGGERS
            else None,
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
        waits = [self._next_deadline(status, now, deadline)]
        if blocked == "SecretNotFound":
            waits.append(_secret_retry(conditions, now))
        if routing_pending:
            waits.append(ENDPOINTS_RETRY)
        due = [wait for wait in waits if wait is not None]
        return Result(requeue_after=min(due) if due else None)

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

    def _service_routes(self, env: JSON, *, replicas: int, image: str) -> bool:
        """Whether the Service sends traffic to enough ready pods, and to none of an old image.

        Read once per rollout, when the Deployment turns ready: Endpoints are not watched. An
        old pod can linger in the Endpoints for a moment after the Deployment counts it gone.
        """
        meta = env["metadata"]
        endpoints = self.ctx.kube.get(ENDPOINTS, meta["name"], namespace=meta["namespace"])
        addresses = [
            address
            for subset in (endpoints or {}).get("subsets") or []
            for address in subset.get("addresses") or []
        ]
        images = {
            pod["metadata"]["name"]: pod["spec"]["containers"][0].get("image")
            for pod in self._pods(env)
        }
        stale = [
            address
            for address in addresses
            if images.get((address.get("targetRef") or {}).get("name"), image) != image
        ]
        return len(addresses) >= replicas and not stale

    def _pods(self, env: JSON) -> list[JSON]:
        meta = env["metadata"]
        return [
            pod
            for pod in self.ctx.caches[POD].items(namespace=meta["namespace"])
            if pod["metadata"].get("labels", {}).get(manifests.LABEL_ENVIRONMENT) == meta["name"]
        ]

    def _pod_problem(self, env: JSON, image: str) -> PodProblem | None:
        meta = env["metadata"]
        problem = pod_problem(self._pods(env), image=image)
        if problem is not None and problem.reason == UNHEALTHY:
            # Probe failures are told only in Events: one read, while the problem lasts.
            events = self.ctx.kube.list(
                EVENT,
                namespace=meta["namespace"],
                field_selector=f"involvedObject.name={problem.pod}",
            )
            message = probe_message(events.get("items", []), pod=problem.pod)
            if message:
                problem = PodProblem(reason=problem.reason, message=message, pod=problem.pod)
        return problem

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
                    resources=_resources(app),
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


def _resources(app: JSON) -> JSON:
    """The pods' requests and limits: the Project's, else the documented defaults."""
    resources = AppResources.model_validate(app.get("resources") or {})
    wire = resources.model_dump(by_alias=True, exclude_none=True)
    return {kind: {k: canonical(v) for k, v in amounts.items()} for kind, amounts in wire.items()}


def _secret_retry(conditions: list[JSON], now: datetime) -> float:
    since = next(
        (parse_time(c.get("lastTransitionTime")) for c in conditions if c["type"] == "Progressing"),
        None,
    )
    waited = (now - since).total_seconds() if since else 0.0
    return min(max(waited / 4, SECRET_RETRY_MIN), SECRET_RETRY_MAX)


def _expires(project: JSON, env: JSON, *, now: datetime) -> str:
    """When a preview goes: `ttl` after its last rollout, but never later than `maxAge` after
    its creation (Render's and Heroku's inactivity expiry, with an absolute cap)."""
    config = project["spec"].get("previewEnvironments") or {}
    expires = now + parse_duration(config.get("ttl", "168h"))
    created = parse_time(env["metadata"].get("creationTimestamp"))
    if config.get("maxAge") and created is not None:
        expires = min(expires, created + parse_duration(config["maxAge"]))
    return rfc3339(expires)


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
        and status.get("replicas", 0) <= replicas  # the old ReplicaSet's pods are gone
        and status.get("updatedReplicas", 0) >= replicas
        and status.get("availableReplicas", 0) >= replicas
        and status.get("readyReplicas", 0) >= replicas
    )


def _reason(obj: JSON, type_: str) -> str:
    for entry in obj.get("conditions", []):
        if entry.get("type") == type_:
            return str(entry.get("reason", ""))
    return ""
