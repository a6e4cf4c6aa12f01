"""The operator process: watch caches feed a work queue, workers reconcile one key at a time.

Watches and timers only enqueue keys; all decisions happen in the reconcilers, from the caches,
so a missed event is repaired by the next event or by the periodic resync.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Hashable
from datetime import timedelta
from typing import Any

from kapsa import metrics
from kapsa.api.common import parse_duration
from kapsa.errors import KapsaError
from kapsa.git.confine import Confinement, GitRunner
from kapsa.k8s.client import JSON, Kube
from kapsa.k8s.informer import Informer
from kapsa.k8s.lease import LeaderElector
from kapsa.k8s.manifests import LABEL_ENVIRONMENT, LABEL_MANAGED, LABEL_PROJECT
from kapsa.k8s.resources import (
    CLUSTER_ISSUER,
    DEPLOYMENT,
    DOMAIN_POOL,
    ENVIRONMENT,
    INGRESS,
    JOB,
    KPACK_IMAGE,
    NAMESPACE,
    POD,
    PROJECT,
    REGISTRY,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    ResourceType,
)
from kapsa.ledger import Ledger
from kapsa.reconcile.context import Caches, Context, Settings
from kapsa.reconcile.environment import EnvironmentReconciler
from kapsa.reconcile.platform import DomainPoolReconciler, RegistryReconciler
from kapsa.reconcile.project import ProjectReconciler, Result
from kapsa.reconcile.queue import WorkQueue
from kapsa.reconcile.recorder import LedgerCatchUp
from kapsa.reconcile.sources import Sources
from kapsa.reconcile.tenancy import repositories_overlap, webhook_token
from kapsa.scheduler import Scheduler

log = logging.getLogger(__name__)

MANAGED = f"{LABEL_MANAGED}=kapsa"


class Operator:
    def __init__(
        self,
        *,
        kube: Kube,
        ledger: Ledger,
        settings: Settings,
        workers: int = 4,
        leader_election: bool = True,
        identity: str | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.queue = WorkQueue()
        self.caches = Caches()
        self.ctx = Context(
            kube=kube,
            caches=self.caches,
            ledger=ledger,
            settings=settings,
            enqueue=self.queue.add,
            enqueue_after=self.queue.add_after,
            git=GitRunner(Confinement.for_git(cache=settings.git_cache))
            if settings.confine_git
            else GitRunner(),
        )
        self.sources = Sources()
        catch_up = LedgerCatchUp()
        self.projects = ProjectReconciler(self.ctx, sources=self.sources, catch_up=catch_up)
        self.environments = EnvironmentReconciler(self.ctx, catch_up=catch_up)
        self.pools = DomainPoolReconciler(self.ctx)
        self.registries = RegistryReconciler(self.ctx)
        self.scheduler = Scheduler(
            poll=self.poll, resync=self.resync, resync_seconds=settings.resync_seconds
        )
        self.workers = workers
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._failures: dict[Hashable, int] = {}
        self.leader_election = leader_election
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.elector: LeaderElector | None = None
        self.leading = threading.Event()
        metrics.track_queue_depth(self.queue.depth)
        metrics.track_environments(self._environments_by_phase)
        self._watch(PROJECT, self._on_project)
        self._watch(ENVIRONMENT, self._on_environment)
        self._watch(DOMAIN_POOL, lambda _t, _o: self._enqueue_pools_and_envs())
        self._watch(REGISTRY, self._on_registry)
        self._watch(CLUSTER_ISSUER, lambda _t, _o: self._enqueue_pools_and_envs())
        self._watch(NAMESPACE, self._on_project_child, label_selector=LABEL_PROJECT)
        self._watch(SERVICE_ACCOUNT, lambda _t, _o: None, label_selector=MANAGED)
        self._watch(KPACK_IMAGE, self._on_project_child, label_selector=MANAGED)
        self._watch(JOB, self._on_project_child, label_selector=MANAGED)
        for resource in (DEPLOYMENT, SERVICE, INGRESS):
            self._watch(resource, self._on_environment_child, label_selector=MANAGED)
        # Read-only: what the kubelet says of the apps' pods becomes the Environments' conditions.
        self._watch(POD, self._on_environment_pod, label_selector=LABEL_ENVIRONMENT)
        self._watch(SECRET, self._on_own_secret, namespace=settings.namespace)

    # -- wiring --------------------------------------------------------------------------------

    def _watch(
        self,
        resource: ResourceType,
        handler: Any,
        *,
        label_selector: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.caches.informers[resource.plural] = Informer(
            self.kube,
            resource,
            on_event=handler,
            label_selector=label_selector,
            namespace=namespace,
        )

    def _on_own_secret(self, _event: str, obj: JSON) -> None:
        """A credentials Secret changed: re-check the Registries and Projects that use it."""
        name = obj["metadata"]["name"]
        for registry in self.caches[REGISTRY].items():
            if registry["spec"]["credentialsSecretRef"]["name"] == name:
                self._on_registry("MODIFIED", registry)
        for project in self.caches[PROJECT].items():
            ref = project["spec"]["source"]["git"].get("secretRef") or {}
            if ref.get("name") == name:
                self.queue.add(("Project", project["metadata"]["name"]))

    def _on_project(self, event: str, obj: JSON) -> None:
        name = obj["metadata"]["name"]
        self.queue.add(("Project", name))
        for env in self.caches[ENVIRONMENT].items(namespace=name):
            self.queue.add(("Environment", name, env["metadata"]["name"]))
        if event == "DELETED":
            self.scheduler.forget(name)
            # A Project refused this one's repository may take it now (repository_owner).
            build = obj["spec"]["build"]
            for other in self.caches[PROJECT].items():
                theirs = other["spec"]["build"]
                same_registry = theirs["registryRef"]["name"] == build["registryRef"]["name"]
                if same_registry and repositories_overlap(
                    theirs["repository"], build["repository"]
                ):
                    self.queue.add(("Project", other["metadata"]["name"]))
        else:
            interval = parse_duration(
                obj["spec"]["source"].get("pollInterval", "5m"),
                floor=timedelta(seconds=self.ctx.settings.min_poll_interval),
            )
            self.scheduler.track(name, interval_seconds=interval.total_seconds())

    def _on_environment(self, _event: str, obj: JSON) -> None:
        meta = obj["metadata"]
        self.queue.add(("Environment", meta["namespace"], meta["name"]))
        self.queue.add(("Project", obj["spec"]["project"]))

    def _on_registry(self, _event: str, obj: JSON) -> None:
        self.queue.add(("Registry", obj["metadata"]["name"]))
        for project in self.caches[PROJECT].items():
            if project["spec"]["build"]["registryRef"]["name"] == obj["metadata"]["name"]:
                self.queue.add(("Project", project["metadata"]["name"]))

    def _enqueue_pools_and_envs(self) -> None:
        for pool in self.caches[DOMAIN_POOL].items():
            self.queue.add(("DomainPool", pool["metadata"]["name"]))
        for env in self.caches[ENVIRONMENT].items():
            self.queue.add(("Environment", env["metadata"]["namespace"], env["metadata"]["name"]))

    def _on_project_child(self, _event: str, obj: JSON) -> None:
        project = obj["metadata"].get("labels", {}).get(LABEL_PROJECT)
        if project:
            self.queue.add(("Project", project))

    def _on_environment_child(self, _event: str, obj: JSON) -> None:
        meta = obj["metadata"]
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "Environment":
                self.queue.add(("Environment", meta["namespace"], ref["name"]))

    def _on_environment_pod(self, _event: str, obj: JSON) -> None:
        meta = obj["metadata"]
        environment = meta.get("labels", {}).get(LABEL_ENVIRONMENT)
        if environment:
            self.queue.add(("Environment", meta["namespace"], environment))

    def _environments_by_phase(self) -> Counter[tuple[str, str]]:
        """(phase, type) -> how many Environments the cache holds: kapsa_environments."""
        return Counter(
            (
                (env.get("status") or {}).get("phase", "Pending"),
                (env.get("spec") or {}).get("type", "standard"),
            )
            for env in self.caches[ENVIRONMENT].items()
        )

    # -- timers --------------------------------------------------------------------------------

    def poll(self, name: str) -> None:
        """List a Project's branches now; enqueue it if anything changed."""
        project = self.caches[PROJECT].get(name)
        if project is None:
            return
        with metrics.timed_poll() as done:
            snapshot, changed = self.sources.poll(self.ctx, project, gated=True)
            done("error" if snapshot.error is not None else "changed" if changed else "unchanged")
        if changed:
            self.queue.add(("Project", name))

    def trigger_poll(self, name: str) -> bool:
        """A push webhook: list the branches now, off the request thread."""
        if self.caches[PROJECT].get(name) is None:
            return False
        if not self.leading.is_set():
            raise KapsaError("this replica is not leading; the leader polls")
        if not self.scheduler.poll_now(name):  # created a moment ago, not tracked yet
            threading.Thread(target=self.poll, args=(name,), daemon=True).start()
        return True

    def webhook_secret(self, name: str) -> bytes | None:
        """The shared token of a Project's push webhooks, read from its Secret."""
        project = self.caches[PROJECT].get(name)
        return webhook_token(self.ctx, project) if project is not None else None

    def ready(self) -> bool:
        """Caches synced, and leading or standing by for the Lease."""
        synced = all(i.wait_synced(0) for i in self.caches.informers.values())
        return synced and (self.leading.is_set() or self.leader_election)

    def resync(self) -> None:
        """Every object once more, from the caches: the backstop for anything missed."""
        for pool in self.caches[DOMAIN_POOL].items():
            self.queue.add(("DomainPool", pool["metadata"]["name"]))
        for registry in self.caches[REGISTRY].items():
            self.queue.add(("Registry", registry["metadata"]["name"]))
        for project in self.caches[PROJECT].items():
            self.queue.add(("Project", project["metadata"]["name"]))
        for env in self.caches[ENVIRONMENT].items():
            self.queue.add(("Environment", env["metadata"]["namespace"], env["metadata"]["name"]))

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        self.ctx.git.start()
        for informer in self.caches.informers.values():
            informer.start()
        for informer in self.caches.informers.values():
            if not informer.wait_synced(60):
                log.warning("cache of %s not synced yet", informer.resource.plural)
        if self.leader_election:
            self.elector = LeaderElector(
                self.kube,
                namespace=self.settings.namespace,
                name="kapsa-operator",
                identity=self.identity,
                on_started_leading=self._lead,
                on_stopped_leading=self._lost_lead,
            )
            threading.Thread(target=self.elector.run, name="leader", daemon=True).start()
        else:
            self._lead()

    def _lead(self) -> None:
        self.leading.set()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.scheduler.start()
        self.resync()

    def _lost_lead(self) -> None:
        # As controller-runtime does: a replica that lost its lease exits and is restarted clean.
        log.error("leadership lost; exiting")
        os._exit(1)

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        self.scheduler.shutdown()
        self.ctx.git.shutdown()
        for informer in self.caches.informers.values():
            informer.stop()
        if self.elector is not None:
            self.elector.stop()
            self.elector.release()

    def wait(self) -> None:
        self._stop.wait()

    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            started = time.perf_counter()
            kind = str(key[0]) if isinstance(key, tuple) else "unknown"
            try:
                result = self._dispatch(key)
            except Exception as error:
                metrics.observe_reconcile(
                    kind=kind, result="error", seconds=time.perf_counter() - started
                )
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.05 * 2**failures, 300.0)
                log.warning(
                    "reconcile of %s failed (%s); retrying in %.1fs",
                    key,
                    error,
                    delay,
                    exc_info=failures >= 3,
                )
                self.queue.done(key)
                self.queue.add_after(key, delay)
                continue
            metrics.observe_reconcile(
                kind=kind,
                result="requeue" if result.requeue_after is not None else "success",
                seconds=time.perf_counter() - started,
            )
            self._failures.pop(key, None)
            self.queue.done(key)
            if result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)

    def _dispatch(self, key: Hashable) -> Result:
        assert isinstance(key, tuple)
        kind = key[0]
        if kind == "Project":
            return self.projects.reconcile(key[1])
        if kind == "Environment":
            return self.environments.reconcile(key[1], key[2])
        if kind == "DomainPool":
            return self.pools.reconcile(key[1])
        if kind == "Registry":
            return self.registries.reconcile(key[1])
        raise ValueError(f"unknown key {key!r}")
