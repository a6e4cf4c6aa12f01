"""Reconcile a Project: namespace, build identity, builds per branch, Environments, status.

Level-based: every pass reads the cached object and its children, derives what should exist,
writes only what differs, and lets the machine decide the phase from what it observed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kapsa import metrics
from kapsa.api.common import parse_duration
from kapsa.api.project import ANNOTATION_RECONCILE
from kapsa.build import BuildResult
from kapsa.errors import SourceError, UnsafeURLError
from kapsa.git.urls import validate_url
from kapsa.k8s import manifests
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.resources import (
    ENVIRONMENT,
    NAMESPACE,
    PROJECT,
    REGISTRY,
)
from kapsa.machines import (
    DELETED,
    BuildState,
    ProjectObservation,
    Transition,
    decide_project,
)
from kapsa.metrics import BuildOutcome
from kapsa.reconcile import tenancy
from kapsa.reconcile.builds import Builds
from kapsa.reconcile.conditions import StatusDraft
from kapsa.reconcile.context import Context, parse_time, rfc3339
from kapsa.reconcile.identity import BuildIdentity
from kapsa.reconcile.namespaces import namespace_refusal
from kapsa.reconcile.previews import PreviewReconciler
from kapsa.reconcile.quota import NamespaceQuota
from kapsa.reconcile.recorder import (
    LedgerCatchUp,
    entry_from_status,
    last_transition,
    write_status,
)
from kapsa.reconcile.sources import Snapshot, Sources

log = logging.getLogger(__name__)

FINALIZER = "kapsa.io/ledger"


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None


class ProjectReconciler:
    def __init__(self, ctx: Context, *, sources: Sources, catch_up: LedgerCatchUp) -> None:
        self.ctx = ctx
        self.sources = sources
        self.catch_up = catch_up
        self.builds = Builds(ctx)
        self.identity = BuildIdentity(ctx)
        self.quota = NamespaceQuota(ctx)
        self.previews = PreviewReconciler(
            ctx, builds=self.builds, environment_manifest=environment_manifest
        )

    # -- entry ---------------------------------------------------------------------------------

    def reconcile(self, name: str) -> Result:
        ctx = self.ctx
        obj = ctx.caches[PROJECT].get(name)
        if obj is None:
            self.sources.forget(name)
            return Result()
        self.catch_up.ensure(ctx, obj, project=name)
        if obj["metadata"].get("deletionTimestamp"):
            return self._finalize(obj)
        if FINALIZER not in obj["metadata"].get("finalizers", []):
            finalizers = [*obj["metadata"].get("finalizers", []), FINALIZER]
            ctx.kube.merge_patch(PROJECT, name, {"metadata": {"finalizers": finalizers}})
            return Result()  # the watch event brings the updated object back
        return self._reconcile(obj)

    # -- the normal path -----------------------------------------------------------------------

    def _reconcile(self, obj: JSON) -> Result:
        ctx = self.ctx
        name = obj["metadata"]["name"]
        spec = obj["spec"]
        draft = StatusDraft(obj, now=rfc3339(ctx.now()))
        asked = _reconcile_asked(obj)
        if asked is not None:  # acknowledged in this status write, whatever else it says
            draft.status["lastHandledReconcileAt"] = asked
        namespace = name
        registry = self._preflight(obj, draft, namespace=namespace)
        if registry is None:
            self._write(obj, draft.finish(), None)
            draft.written()
            return Result()
        draft.status["namespace"] = namespace
        _note_poll_floor(draft, spec, floor=ctx.settings.min_poll_interval)
        url = spec["source"]["git"]["url"]
        snapshot = self._snapshot(obj, draft, fresh=asked is not None)

        tracked = _tracked_branches(spec)
        branches, results = self._build_branches(
            obj,
            draft,
            registry=registry,
            namespace=namespace,
            url=url,
            snapshot=snapshot,
            tracked=tracked,
        )
        self.previews.reconcile(
            obj,
            draft,
            registry=registry,
            namespace=namespace,
            url=url,
            snapshot=snapshot,
            reserved=set(_template_names(spec)),
        )
        # An Environment appears once its branch has an image (docs/developer-guide.md).
        environments = self._ensure_environments(
            obj, namespace, ready_branches={b for b, e in branches.items() if e.get("image")}
        )

        combined = _combine(results.values(), expected=len(tracked))
        failed = next((r for r in results.values() if r.state == BuildState.FAILED), None)
        envs_failed = [e for e in environments if _phase(e) == "Failed"]
        observation = ProjectObservation(
            heads_known=all(b in results for b in tracked),
            build=combined,
            build_message=failed.message if failed else "",
            environments_total=len(spec.get("environments", [])),
            environments_running=sum(1 for e in environments if _up_to_date(e, branches)),
            environments_failed=len(envs_failed),
            failed_environment=envs_failed[0]["metadata"]["name"] if envs_failed else "",
        )
        transition = decide_project(draft.old.get("phase", "Pending"), observation)
        self._summarize(
            obj,
            draft,
            transition=transition,
            tracked=tracked,
            branches=branches,
            snapshot=snapshot,
            namespace=namespace,
        )
        status = draft.finish()
        if transition is None and _same_but_poll_time(status, draft.old):
            return Result()  # a poll that found nothing new writes nothing
        # A build row names the commit being built; the others what the Project now runs.
        building = transition is not None and transition.trigger in _BUILD_TRIGGERS
        head = branches.get(tracked[0], {}).get("commit") if tracked else None
        self._write(
            obj,
            status,
            transition,
            commit=head if building else status.get("latestCommit"),
            image=None if building else status.get("latestImage"),
        )
        draft.written()
        return Result()

    def _preflight(self, obj: JSON, draft: StatusDraft, *, namespace: str) -> JSON | None:
        """The checks that stop everything: a refused URL, a foreign namespace, no Registry, a
        Secret the Project may not use.

        Returns the Registry when the Project may go on.
        """
        ctx = self.ctx
        spec = obj["spec"]
        try:
            validate_url(
                spec["source"]["git"]["url"],
                allow_insecure=ctx.settings.allow_insecure_sources,
                allow_private_hosts=ctx.settings.allow_private_hosts,
            )
        except UnsafeURLError as error:
            draft.condition("Ready", False, "InvalidSource", str(error))
            return None
        except SourceError:
            pass  # unreachable right now: the listing says so as a condition
        refusal = namespace_refusal(namespace, ctx.settings)
        if refusal is not None:
            draft.condition("Ready", False, "NamespaceReserved", refusal)
            return None
        if not self._ensure_namespace(obj, namespace):
            draft.condition(
                "Ready",
                False,
                "NamespaceConflict",
                f"namespace {namespace} exists and belongs to {self._namespace_owner(namespace)};"
                " Kapsa will not take it over",
            )
            return None
        registry_name = spec["build"]["registryRef"]["name"]
        registry = ctx.caches[REGISTRY].get(registry_name)
        if registry is None:
            draft.condition(
                "Ready", False, "RegistryNotFound", f"Registry {registry_name} does not exist"
            )
            return None
        owner = tenancy.repository_owner(obj, ctx.caches[PROJECT].items())
        if owner is not None:
            draft.condition(
                "Ready",
                False,
                "RepositoryTaken",
                f"repository {spec['build']['repository']} of Registry {registry_name} belongs "
                f"to Project {owner} (a repository and everything under it is one Project's); "
                "choose another build.repository",
            )
            return None
        self.quota.ensure(obj, namespace=namespace)
        try:
            tenancy.git_secret(ctx, obj)
        except tenancy.SecretRefusedError as error:
            draft.condition("Ready", False, error.reason, str(error))
            return None
        self.identity.ensure(obj, namespace=namespace, registry=registry)
        return registry

    def _snapshot(self, obj: JSON, draft: StatusDraft, *, fresh: bool) -> Snapshot:
        """Branch heads from the last listing, listing now if there is none yet or `fresh`."""
        snapshot = self.sources.get(obj["metadata"]["name"])
        if snapshot is None or fresh:
            snapshot, _ = self.sources.poll(self.ctx, obj)
        if snapshot.error:
            draft.condition("SourceReachable", False, snapshot.reason, snapshot.error)
        else:
            listed = rfc3339(snapshot.listed_at or self.ctx.now())
            draft.condition(
                "SourceReachable", True, "Listed", f"{len(snapshot.heads)} branches listed"
            )
            draft.status["lastPollTime"] = listed
        return snapshot

    def _build_branches(
        self,
        obj: JSON,
        draft: StatusDraft,
        *,
        registry: JSON,
        namespace: str,
        url: str,
        snapshot: Snapshot,
        tracked: list[str],
    ) -> tuple[dict[str, JSON], dict[str, BuildResult]]:
        """One build per branch a standard environment runs, at the branch's head."""
        branches = {b["name"]: dict(b) for b in draft.old.get("branches", [])}
        results: dict[str, BuildResult] = {}
        for branch in tracked:
            entry = branches.setdefault(branch, {"name": branch})
            head = snapshot.heads.get(branch) or entry.get("commit")
            if head is None:
                continue
            entry["commit"] = head
            request = self.builds.build_request(
                obj, registry=registry, namespace=namespace, url=url, branch=branch, commit=head
            )
            result = self.builds.ensure_build(obj, request=request, url=url)
            results[branch] = result
            if result.state == BuildState.SUCCEEDED and result.commit == head and result.image:
                entry["builtCommit"] = head
                entry["image"] = result.image
        draft.status["branches"] = [branches[b] for b in tracked if b in branches]
        failed = next((r for r in results.values() if r.state == BuildState.FAILED), None)
        combined = _combine(results.values(), expected=len(tracked))
        if failed is not None:
            draft.condition("BuildSucceeded", False, "BuildFailed", failed.message)
        elif combined == BuildState.SUCCEEDED:
            draft.condition(
                "BuildSucceeded",
                True,
                "BuildSucceeded",
                "images built for "
                + ", ".join(f"{b}@{(r.commit or '?')[:7]}" for b, r in results.items()),
            )
        elif combined == BuildState.RUNNING:
            draft.condition("BuildSucceeded", None, "BuildRunning", "a build is running")
        _count_build_outcome(draft)
        return branches, results

    def _summarize(
        self,
        obj: JSON,
        draft: StatusDraft,
        *,
        transition: Transition | None,
        tracked: list[str],
        branches: dict[str, JSON],
        snapshot: Snapshot,
        namespace: str,
    ) -> None:
        """Phase, Ready, latest commit and the environment list, for `kubectl get`."""
        status = draft.status
        phase = transition.dest if transition else draft.old.get("phase", "Pending")
        status["phase"] = phase
        missing = [b for b in tracked if b not in snapshot.heads and not snapshot.error]
        if missing:
            draft.condition(
                "Ready",
                False,
                "BranchNotFound",
                "branches not in the repository: " + ", ".join(missing),
            )
        elif phase == "Running":
            draft.condition("Ready", True, "Running", "every environment runs its image")
        else:
            draft.condition(
                "Ready",
                False,
                phase,
                transition.message if transition else draft.old.get("message") or phase,
            )
        if transition is not None:
            status["message"] = transition.message
        primary = branches.get(tracked[0], {}) if tracked else {}
        if primary.get("builtCommit"):
            status["latestCommit"] = primary["builtCommit"]
            status["latestImage"] = primary["image"]
        summaries = []
        for env in self._all_environments(namespace, obj["metadata"]["name"]):
            summary = {
                "name": env["metadata"]["name"],
                "type": env["spec"].get("type", "standard"),
                "phase": _phase(env),
                "url": (env.get("status") or {}).get("url"),
            }
            summaries.append({k: v for k, v in summary.items() if v is not None})
        status["environments"] = sorted(
            summaries, key=lambda e: (e["type"] != "standard", e["name"])
        )

    # -- deletion ------------------------------------------------------------------------------

    def _finalize(self, obj: JSON) -> Result:
        """Record the Project's end in the ledger; the owned namespace takes everything with it."""
        name = obj["metadata"]["name"]
        phase = (obj.get("status") or {}).get("phase", "Pending")
        observation = ProjectObservation(deleting=True, finalized=True)
        transition = decide_project(phase, observation)
        if transition is not None and transition.dest != DELETED:
            status = dict(obj.get("status") or {})
            status["phase"] = transition.dest
            self._write(obj, status, transition)
            return Result()  # the watch event of that write carries on to the final step
        if transition is not None:
            self._ledger_only(obj, transition)
        finalizers = [f for f in obj["metadata"].get("finalizers", []) if f != FINALIZER]
        try:
            self.ctx.kube.merge_patch(PROJECT, name, {"metadata": {"finalizers": finalizers}})
        except ApiError as error:
            if error.status != 404:
                raise
        self.sources.forget(name)
        return Result()

    def _ledger_only(self, obj: JSON, transition: Any) -> None:
        seq = int(((obj.get("status") or {}).get("lastTransition") or {}).get("seq", 0)) + 1
        last = last_transition(
            transition=transition, seq=seq, at=rfc3339(self.ctx.now()), commit=None, image=None
        )
        self.ctx.ledger.append(entry_from_status(obj, last, project=obj["metadata"]["name"]))

    # -- pieces --------------------------------------------------------------------------------

    def _write(
        self,
        obj: JSON,
        status: JSON,
        transition: Any,
        *,
        commit: str | None = None,
        image: str | None = None,
    ) -> JSON | None:
        return write_status(
            self.ctx,
            PROJECT,
            obj,
            status,
            transition=transition,
            project=obj["metadata"]["name"],
            catch_up=self.catch_up,
            commit=commit,
            image=image,
        )

    def _ensure_namespace(self, obj: JSON, namespace: str) -> bool:
        ctx = self.ctx
        cached = ctx.caches[NAMESPACE].get(namespace)
        if cached is not None and _owned_by(cached, obj):
            return True
        live = cached or ctx.kube.get(NAMESPACE, namespace)
        if live is None:
            ctx.kube.create(NAMESPACE, manifests.namespace(name=namespace, project=obj))
            return True
        return _owned_by(live, obj)

    def _namespace_owner(self, namespace: str) -> str:
        live = self.ctx.kube.get(NAMESPACE, namespace) or {"metadata": {}}
        owners = live["metadata"].get("ownerReferences") or []
        if owners:
            return f"{owners[0]['kind']} {owners[0]['name']}"
        return "no Project (created outside Kapsa)"

    def _ensure_environments(
        self, obj: JSON, namespace: str, *, ready_branches: set[str]
    ) -> list[JSON]:
        ctx = self.ctx
        name = obj["metadata"]["name"]
        wanted = {t["name"]: t for t in obj["spec"].get("environments", [])}
        live = {
            e["metadata"]["name"]: e
            for e in ctx.caches[ENVIRONMENT].items(namespace=namespace)
            if e["spec"].get("project") == name
            and e["spec"].get("type", "standard") == "standard"
            and (_owned_by(e, obj) or e["metadata"]["name"] in wanted)
        }
        result = []
        for env_name, template in wanted.items():
            manifest = environment_manifest(
                project=obj,
                namespace=namespace,
                name=env_name,
                env_type="standard",
                branch=template["branch"],
                auto_sync=template.get("autoSync", True),
                secret_refs=template.get("secretRefs", []),
            )
            current = live.get(env_name)
            if current is None and template["branch"] not in ready_branches:
                continue
            if current is None or not manifests.contains(current, manifest):
                current = ctx.kube.apply(ENVIRONMENT, manifest)
            result.append(current)
        for env_name, env in live.items():
            if env_name not in wanted and not env["metadata"].get("deletionTimestamp"):
                ctx.kube.delete(ENVIRONMENT, env_name, namespace=namespace)
        return result

    def _all_environments(self, namespace: str, project: str) -> list[JSON]:
        return [
            e
            for e in self.ctx.caches[ENVIRONMENT].items(namespace=namespace)
            if e["spec"].get("project") == project
            and tenancy.environment_refusal(e, self.ctx.caches[PROJECT].get(project)) is None
        ]


def environment_manifest(
    *,
    project: JSON,
    namespace: str,
    name: str,
    env_type: str,
    branch: str,
    auto_sync: bool,
    secret_refs: list[JSON],
    labels: dict[str, str] | None = None,
) -> JSON:
    return {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Environment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                manifests.LABEL_PROJECT: project["metadata"]["name"],
                manifests.LABEL_TYPE: env_type,
                manifests.LABEL_MANAGED: "kapsa",
                **(labels or {}),
            },
            "ownerReferences": [manifests.owner_reference(project)],
            "finalizers": [FINALIZER],
        },
        "spec": {
            "project": project["metadata"]["name"],
            "type": env_type,
            "branch": branch,
            "autoSync": auto_sync,
            "secretRefs": [{"name": s["name"]} for s in secret_refs],
        },
    }


_BUILD_TRIGGERS = ("build_started", "build_failed")


def _count_build_outcome(draft: StatusDraft) -> None:
    """A build outcome counts once: when the BuildSucceeded condition turns to it.

    Its duration runs from when the condition turned Unknown (BuildRunning), as status keeps it,
    so an operator restart in the middle of a build still measures the whole build.
    """
    new = next((c for c in draft.conditions if c["type"] == "BuildSucceeded"), None)
    old = next((c for c in draft.old.get("conditions", []) if c["type"] == "BuildSucceeded"), None)
    if new is None or (old is not None and old.get("message") == new.get("message")):
        return
    if new["status"] not in ("True", "False"):
        return
    started = (
        parse_time(old.get("lastTransitionTime")) if old and old["status"] == "Unknown" else None
    )
    ended = parse_time(new.get("lastTransitionTime")) or parse_time(draft.now)
    outcome: BuildOutcome = "succeeded" if new["status"] == "True" else "failed"
    seconds = (ended - started).total_seconds() if started and ended else None
    draft.after_write(
        lambda: metrics.count_build_finished(preview=False, outcome=outcome, seconds=seconds)
    )


def _reconcile_asked(obj: JSON) -> str | None:
    """The value of a `kapsa reconcile` request not acted on yet, or None.

    Like Flux's reconcile.fluxcd.io/requestedAt: any new annotation value asks for one
    reconcile with a fresh listing of the branches (no rebuild, unlike kapsa.io/rebuild),
    and status.lastHandledReconcileAt tells the asker it happened.
    """
    asked = (obj["metadata"].get("annotations") or {}).get(ANNOTATION_RECONCILE)
    handled = (obj.get("status") or {}).get("lastHandledReconcileAt")
    return str(asked) if asked and asked != handled else None


def _note_poll_floor(draft: StatusDraft, spec: JSON, *, floor: float) -> None:
    """Say so when pollInterval is below the operator's floor (the scheduler uses the floor)."""
    asked = spec["source"].get("pollInterval", "5m")
    if parse_duration(asked).total_seconds() < floor:
        draft.condition(
            "PollIntervalRaised",
            True,
            "BelowMinimum",
            f"pollInterval {asked} is below this Kapsa's minimum of {floor:g}s; "
            f"branches are listed every {floor:g}s",
        )
    else:
        draft.conditions = [c for c in draft.conditions if c["type"] != "PollIntervalRaised"]


def _same_but_poll_time(status: JSON, old: JSON) -> bool:
    def strip(value: JSON) -> JSON:
        return {k: v for k, v in value.items() if k != "lastPollTime"}

    return strip(status) == strip(old)


def _template_names(spec: JSON) -> list[str]:
    return [t["name"] for t in spec.get("environments", [])]


def _tracked_branches(spec: JSON) -> list[str]:
    seen: list[str] = []
    for template in spec.get("environments", []):
        if template["branch"] not in seen:
            seen.append(template["branch"])
    return seen


def _combine(results: Any, *, expected: int) -> BuildState:
    states = [r.state for r in results]
    if not states:
        return BuildState.NONE
    if BuildState.FAILED in states:
        return BuildState.FAILED
    if BuildState.RUNNING in states or BuildState.NONE in states:
        return BuildState.RUNNING
    return BuildState.SUCCEEDED if len(states) == expected else BuildState.RUNNING


def _up_to_date(env: JSON, branches: dict[str, JSON]) -> bool:
    """Running, and on the newest image of its branch unless it does not follow the branch."""
    if _phase(env) != "Running":
        return False
    if not env["spec"].get("autoSync", True):
        return True
    branch = branches.get(env["spec"]["branch"], {})
    status = env.get("status") or {}
    quarantined = {q.get("commit") for q in status.get("quarantinedCommits", [])}
    if branch.get("builtCommit") in quarantined:
        return True  # rolled back from it on purpose: auto-sync skips it
    return branch.get("image") is None or status.get("image") == branch["image"]


def _phase(env: JSON) -> str:
    return str((env.get("status") or {}).get("phase", "Pending"))


def _owned_by(obj: JSON, owner: JSON) -> bool:
    return any(
        ref.get("uid") == owner["metadata"]["uid"]
        for ref in obj["metadata"].get("ownerReferences") or []
    )
