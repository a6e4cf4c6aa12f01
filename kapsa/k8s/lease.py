"""Leader election through a coordination.k8s.io/v1 Lease, as controller-runtime does it.

Only the holder reconciles and polls; the others keep their watch caches warm and take over when
the holder stops renewing for `lease_seconds`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from kapsa.k8s.client import ApiError, Kube
from kapsa.k8s.resources import LEASE

log = logging.getLogger(__name__)


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        on_started_leading: Callable[[], None],
        on_stopped_leading: Callable[[], None],
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self._started = on_started_leading
        self._stopped = on_stopped_leading
        self._stop = threading.Event()
        self.leading = False

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self._try_acquire_or_renew()
            except ApiError as error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                held = False
            if held and not self.leading:
                self.leading = True
                log.info("became leader as %s", self.identity)
                self._started()
            elif not held and self.leading:
                self.leading = False
                log.warning("lost the lease; stopping work")
                self._stopped()
            self._stop.wait(self.renew_seconds if self.leading else 2.0)

    def stop(self) -> None:
        self._stop.set()

    def release(self) -> None:
        """Give the lease up on a clean shutdown so a standby takes over at once."""
        if not self.leading:
            return
        lease = self.kube.get(LEASE, self.name, namespace=self.namespace)
        if lease and lease["spec"].get("holderIdentity") == self.identity:
            lease["spec"]["leaseDurationSeconds"] = 1
            lease["spec"]["renewTime"] = _micro(datetime(1970, 1, 1, tzinfo=UTC))
            with contextlib.suppress(ApiError):
                self.kube.request(
                    "PUT", LEASE.path(namespace=self.namespace, name=self.name), body=lease
                )

    def _try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        lease = self.kube.get(LEASE, self.name, namespace=self.namespace)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _micro(now),
        }
        if lease is None:
            try:
                self.kube.create(
                    LEASE,
                    {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace},
                        "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0},
                    },
                )
            except ApiError as error:
                if error.status == 409:
                    return False
                raise
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = current.get("renewTime")
        expired = True
        if renewed:
            renewed_at = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
            age = (now - renewed_at).total_seconds()
            expired = age > float(current.get("leaseDurationSeconds", self.lease_seconds))
        if holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions", 0)) + 1
        lease["spec"] = {**current, **spec}
        try:
            self.kube.request(
                "PUT", LEASE.path(namespace=self.namespace, name=self.name), body=lease
            )
        except ApiError as error:
            if error.status == 409:
                return False
            raise
        return True
