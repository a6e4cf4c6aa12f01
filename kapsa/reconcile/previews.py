"""Preview environments: one per matching branch, gone when the branch goes or the TTL passes.

What must never happen:
- a failed listing is not evidence: nothing is deleted unless `branch_gone_after` consecutive
  successful listings lacked the branch (counted in `Sources`);
- a branch name becomes a DNS label through `preview_slug`, never a standard environment's name;
  a branch that yields no valid name is skipped with a Warning event, not a crash;
- an expired preview is not brought back by the next poll: only a newer commit on its branch.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any

from kapsa import metrics
from kapsa.api import Phase
from kapsa.api.naming import preview_slug
from kapsa.build import BuildRequest
from kapsa.k8s import manifests
from kapsa.k8s.client import JSON
from kapsa.k8s.resources import ENVIRONMENT, KPACK_IMAGE
from kapsa.machines import BuildState
from kapsa.reconcile.builds import Builds
from kapsa.reconcile.conditions import StatusDraft
from kapsa.reconcile.context import Context, parse_time, rfc3339
from kapsa.reconcile.recorder import emit_event
from kapsa.reconcile.sources import Snapshot

log = logging.getLogger(__name__)

TTL_EXPIRED = "TTLExpired"


def matches(branch: str, *, include: list[str], exclude: list[str]) -> bool:
    """Glob patterns as users write them (`feature/*`); exclude wins."""
    if any(fnmatch.fnmatchcase(branch, p) for p in exclude):
        return False
    return any(fnmatch.fnmatchcase(branch, p) for p in include)


#: Waiting previews listed in status.previews at most; the PreviewsCapped condition counts all.
MAX_WAITING_SHOWN = 100


class PreviewReconciler:
    def __init__(self, ctx: Context, *, builds: Builds, environment_manifest: Any) -> None:
        self.ctx = ctx
        self.builds = builds
        self.environment_manifest = environment_manifest
        self._skipped: set[tuple[str, str]] = set()

    def reconcile(
        self,
        obj: JSON,
        draft: StatusDraft,
        *,
        registry: JSON,
        namespace: str,
        url: str,
        snapshot: Snapshot,
        reserved: set[str],
    ) -> None:
        config = obj["spec"].get("previewEnvironments") or {}
        entries = {p["branch"]: dict(p) for p in draft.old.get("previews", [])}
        live = {
            e["spec"]["branch"]: e
            for e in self.ctx.caches[ENVIRONMENT].items(namespace=namespace)
            if e["spec"].get("type") == "preview"
        }
        wanted = self._wanted_branches(obj, snapshot, config=config, reserved=reserved)
        for branch, name in wanted.items():
            entries.setdefault(branch, {"name": name, "branch": branch})
        limit = int(config.get("maxCount", 10))
        active = 0
        waiting: list[str] = []
        for branch, entry in list(entries.items()):
            env = live.get(branch)
            gone = (
                snapshot.ok
                and snapshot.misses.get(branch, 0) >= self.ctx.settings.branch_gone_after
                and branch not in snapshot.heads
            )
            not_wanted = snapshot.ok and branch in snapshot.heads and branch not in wanted
            entry["gone"] = bool(gone or not_wanted or not config.get("enabled"))
            head = snapshot.heads.get(branch) or entry.get("commit")
            entry["commit"] = head
            if env is not None and (env.get("status") or {}).get("phase") == "Expiring":
                if not self._remove(env, entry):
                    continue
                env = None
            if env is None and head and head != entry.get("expiredCommit"):
                # status.previews may have lost it (a write that lost a race after the delete,
                # a status rewrite, a restore): the ledger has not.
                expired = self._expired_in_ledger(obj, entry)
                if expired is not None:
                    entry["expiredCommit"] = expired
            if entry["gone"] or (head and head == entry.get("expiredCommit")):
                if env is None:
                    self._drop_build(
                        obj, registry=registry, namespace=namespace, url=url, entry=entry
                    )
                    if entry["gone"]:
                        del entries[branch]
                continue
            entry.pop("expiredCommit", None)
            if env is None and active >= limit:
                entry["waiting"] = True
                waiting.append(branch)
                continue
            entry["waiting"] = False
            active += 1
            self._build(obj, entry, draft, registry=registry, namespace=namespace, url=url, env=env)
            if env is None and entry.get("image"):
                self._create_environment(obj, entry, namespace=namespace)
        if waiting:
            draft.condition(
                "PreviewsCapped",
                True,
                "MaxCountReached",
                f"{len(waiting)} branches wait for a preview slot (maxCount "
                f"{limit}): " + ", ".join(sorted(waiting)[:10]),
            )
        elif any(c.get("type") == "PreviewsCapped" for c in draft.conditions):
            draft.condition("PreviewsCapped", False, "BelowMaxCount", "every preview has a slot")
        # A waiting branch holds nothing yet (no build, no Environment) and the next listing
        # finds it again, so status keeps only the first few: 20,000 matching branches must
        # not grow the Project past what etcd stores.
        shown_waiting = set(sorted(waiting)[:MAX_WAITING_SHOWN])
        kept = [e for b, e in entries.items() if not e.get("waiting") or b in shown_waiting]
        _build_condition(draft, entries.values())
        draft.status["previews"] = sorted(kept, key=lambda e: e["name"])

    def _wanted_branches(
        self, obj: JSON, snapshot: Snapshot, *, config: JSON, reserved: set[str]
    ) -> dict[str, str]:
        if not config.get("enabled"):
            return {}
        standard_branches = {t["branch"] for t in obj["spec"].get("environments", [])}
        wanted: dict[str, str] = {}
        for branch in sorted(snapshot.heads):
            if branch in standard_branches or not matches(
                branch,
                include=list(config.get("include", ["*"])),
                exclude=list(config.get("exclude", [])),
            ):
                continue
            name = preview_slug(branch, reserved=reserved)
            if name is None:
                key = (obj["metadata"]["uid"], branch)
                if key not in self._skipped:
                    self._skipped.add(key)
                    emit_event(
                        self.ctx,
                        obj,
                        reason="PreviewSkipped",
                        warning=True,
                        message=f"branch {branch!r} cannot be made a valid host or "
                        "object name; it gets no preview",
                    )
                continue
            wanted[branch] = name
        return wanted

    def _remove(self, env: JSON, entry: JSON) -> bool:
        """Delete an Expiring preview; the garbage collector takes its children (flow 4).

        A preview that ran out its TTL remembers its commit, so only a newer one revives it. The
        memory is written first and the Environment deleted only by a reconcile that read it back:
        a reconcile woken by the deletion may still hold the Project from before the write, and
        without the mark it would create the preview again. Returns whether the deletion was sent.
        """
        status = env.get("status") or {}
        if (status.get("lastTransition") or {}).get("reason") == TTL_EXPIRED:
            expired = status.get("commit") or entry.get("commit")
            if entry.get("expiredCommit") != expired:
                entry["expiredCommit"] = expired
                return False  # the status write wakes the next reconcile, which deletes
        if not env["metadata"].get("deletionTimestamp"):
            meta = env["metadata"]
            self.ctx.kube.delete(ENVIRONMENT, meta["name"], namespace=meta["namespace"])
        return True

    def _request(
        self, obj: JSON, entry: JSON, *, registry: JSON, namespace: str, url: str
    ) -> BuildRequest:
        return self.builds.build_request(
            obj,
            registry=registry,
            namespace=namespace,
            url=url,
            branch=entry["branch"],
            commit=entry["commit"],
            preview=True,
            branch_slug=entry["name"],
        )

    def _expired_in_ledger(self, obj: JSON, entry: JSON) -> str | None:
        """The commit this preview last expired at by TTL, as the ledger recorded it."""
        last = self.ctx.ledger.last_move_to(
            project=obj["metadata"]["name"], environment=entry["name"], state=Phase.EXPIRING
        )
        return last.commit if last is not None and last.reason == TTL_EXPIRED else None

    def _build(
        self,
        obj: JSON,
        entry: JSON,
        draft: StatusDraft,
        *,
        registry: JSON,
        namespace: str,
        url: str,
        env: JSON | None,
    ) -> None:
        if not entry.get("commit"):
            return
        request = self._request(obj, entry, registry=registry, namespace=namespace, url=url)
        result = self.builds.ensure_build(obj, request=request, url=url)
        before = (entry.get("buildState"), entry.get("message"))
        entry["buildState"] = str(result.state)
        if result.state == BuildState.FAILED:
            entry["message"] = result.message
            if env is None and before != (entry["buildState"], entry["message"]):
                # No Environment yet to carry the failure: the Project's Event says it, once
                # per failed build (the condition below keeps saying it).
                message = (
                    f"the preview of {entry['branch']} has no environment: the build of "
                    f"{str(entry['commit'])[:12]} failed: {result.message}"
                )
                draft.after_write(
                    lambda: emit_event(
                        self.ctx, obj, reason="PreviewBuildFailed", warning=True, message=message
                    )
                )
        else:
            entry.pop("message", None)
        built_before = entry.get("builtCommit")
        if (
            result.state == BuildState.SUCCEEDED
            and result.commit == entry["commit"]
            and result.image
        ):
            entry["builtCommit"] = entry["commit"]
            entry["image"] = result.image
        self._count(entry, draft, before=before, built_before=built_before)

    def _count(
        self, entry: JSON, draft: StatusDraft, *, before: tuple[Any, Any], built_before: Any
    ) -> None:
        """The build's start time kept in status, and its end counted once, with its duration."""
        state = entry["buildState"]
        now = self.ctx.now()
        if state == BuildState.RUNNING:
            entry.setdefault("buildStartedAt", rfc3339(now))
            return
        started = parse_time(entry.pop("buildStartedAt", None))
        ended = (
            (state == BuildState.FAILED and before != (state, entry.get("message")))
            or (state == BuildState.SUCCEEDED and entry.get("builtCommit") != built_before)
            or (state == BuildState.SUCCEEDED and before[0] != state)
        )
        if ended:
            outcome: metrics.BuildOutcome = (
                "succeeded" if state == BuildState.SUCCEEDED else "failed"
            )
            seconds = (now - started).total_seconds() if started else None
            draft.after_write(
                lambda: metrics.count_build_finished(preview=True, outcome=outcome, seconds=seconds)
            )

    def _drop_build(
        self, obj: JSON, *, registry: JSON, namespace: str, url: str, entry: JSON
    ) -> None:
        """The branch's build object goes with its preview (kpack Images are per branch)."""
        if not entry.get("commit"):
            return
        request = self._request(obj, entry, registry=registry, namespace=namespace, url=url)
        name = self.builds.object_name(request)
        if self.ctx.caches[KPACK_IMAGE].get(name, namespace) is not None:
            self.ctx.kube.delete(KPACK_IMAGE, name, namespace=namespace)
        for key in ("builtCommit", "image", "buildState", "message", "buildStartedAt"):
            entry.pop(key, None)

    def _create_environment(self, obj: JSON, entry: JSON, *, namespace: str) -> None:
        config = obj["spec"].get("previewEnvironments") or {}
        manifest = self.environment_manifest(
            project=obj,
            namespace=namespace,
            name=entry["name"],
            env_type="preview",
            branch=entry["branch"],
            auto_sync=True,
            secret_refs=list(config.get("secretRefs", [])),
            labels={manifests.LABEL_BRANCH: entry["name"]},
        )
        self.ctx.kube.apply(ENVIRONMENT, manifest)


def _build_condition(draft: StatusDraft, entries: Any) -> None:
    """PreviewBuildSucceeded: False naming every preview whose head failed to build.

    A preview whose first build fails has no Environment to show a condition on; this one, on
    the Project, does, beside BuildSucceeded for the standard environments' branches.
    """
    failed = sorted(
        (e for e in entries if e.get("buildState") == "Failed" and not e.get("gone")),
        key=lambda e: e["branch"],
    )
    if failed:
        draft.condition(
            "PreviewBuildSucceeded",
            False,
            "BuildFailed",
            "; ".join(f"{e['branch']}: {e.get('message') or 'the build failed'}" for e in failed),
        )
    elif any(c.get("type") == "PreviewBuildSucceeded" for c in draft.conditions) or any(
        e.get("buildState") == "Succeeded" for e in entries
    ):
        draft.condition(
            "PreviewBuildSucceeded", True, "BuildSucceeded", "every preview's head is built"
        )
