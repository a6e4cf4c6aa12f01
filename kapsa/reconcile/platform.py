"""The platform admin's objects: a DomainPool is usable once its ClusterIssuer is Ready, a
Registry once Kapsa has logged in to it."""

from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta

from kapsa.errors import KapsaError
from kapsa.k8s.client import JSON
from kapsa.k8s.resources import CLUSTER_ISSUER, DOMAIN_POOL, REGISTRY
from kapsa.reconcile.conditions import condition, set_condition
from kapsa.reconcile.context import Context, rfc3339
from kapsa.reconcile.project import Result
from kapsa.reconcile.recorder import LedgerCatchUp, write_status
from kapsa.registry.credentials import credentials_from_secret
from kapsa.registry.verify import Verification, verify_registry

RECHECK_FAILED = 30.0
RECHECK_VERIFIED = timedelta(minutes=10)


class DomainPoolReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile(self, name: str) -> Result:
        ctx = self.ctx
        pool = ctx.caches[DOMAIN_POOL].get(name)
        if pool is None:
            return Result()
        issuer_name = pool["spec"]["clusterIssuerRef"]["name"]
        issuer = ctx.caches[CLUSTER_ISSUER].get(issuer_name)
        if issuer is None:
            ok, reason = False, "IssuerNotFound"
            message = f"ClusterIssuer {issuer_name} does not exist"
        else:
            ready = condition(issuer, "Ready")
            current = ready is not None and (
                "observedGeneration" not in ready
                or ready["observedGeneration"] == issuer["metadata"].get("generation")
            )
            ok = bool(ready and current and ready.get("status") == "True")
            reason = "IssuerReady" if ok else "IssuerNotReady"
            message = (
                f"ClusterIssuer {issuer_name} is Ready"
                if ok
                else f"ClusterIssuer {issuer_name} is not Ready"
                + (f": {ready.get('message')}" if ready and ready.get("message") else "")
            )
        generation = pool["metadata"].get("generation")
        old = pool.get("status") or {}
        status = dict(old)
        status["conditions"] = set_condition(
            list(old.get("conditions", [])),
            type_="Ready",
            status=ok,
            reason=reason,
            message=message,
            generation=generation,
            now=rfc3339(ctx.now()),
        )
        status["observedGeneration"] = generation
        _write(ctx, DOMAIN_POOL, pool, status)
        return Result(requeue_after=None if ok else RECHECK_FAILED)


class RegistryReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._checked: dict[str, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    def reconcile(self, name: str) -> Result:
        ctx = self.ctx
        registry = ctx.caches[REGISTRY].get(name)
        if registry is None:
            return Result()
        spec = registry["spec"]
        ref = spec["credentialsSecretRef"]
        namespace = ref.get("namespace") or ctx.settings.namespace
        secret = ctx.secret(ref["name"], namespace)
        fingerprint = "/".join(
            [
                str(registry["metadata"].get("generation")),
                secret["metadata"]["resourceVersion"] if secret else "none",
            ]
        )
        now = ctx.now()
        with self._lock:
            previous = self._checked.get(registry["metadata"]["uid"])
        old = registry.get("status") or {}
        if (
            previous
            and previous[0] == fingerprint
            and old.get("verified")
            and now - previous[1] < RECHECK_VERIFIED
        ):
            return Result(requeue_after=(previous[1] + RECHECK_VERIFIED - now).total_seconds())
        verification = self._verify(spec, secret, namespace=namespace)
        status = dict(old)
        status["verified"] = verification.ok
        status["lastVerifiedTime"] = rfc3339(now)
        status["conditions"] = set_condition(
            list(old.get("conditions", [])),
            type_="Ready",
            status=verification.ok,
            reason=verification.reason,
            message=verification.message,
            generation=registry["metadata"].get("generation"),
            now=rfc3339(now),
        )
        status["observedGeneration"] = registry["metadata"].get("generation")
        _write(ctx, REGISTRY, registry, status)
        with self._lock:
            self._checked[registry["metadata"]["uid"]] = (fingerprint, now)
        if verification.ok:
            return Result(requeue_after=RECHECK_VERIFIED.total_seconds())
        return Result(requeue_after=RECHECK_FAILED)

    def _verify(self, spec: JSON, secret: JSON | None, *, namespace: str) -> Verification:
        ref = spec["credentialsSecretRef"]
        if secret is None:
            return Verification(
                ok=False,
                reason="InvalidSecret",
                message=f"Secret {namespace}/{ref['name']} not found",
            )
        try:
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            credentials = credentials_from_secret(
                secret_type=secret.get("type", ""), data=data, server=spec["server"]
            )
        except KapsaError as error:
            return Verification(ok=False, reason="InvalidSecret", message=str(error))
        return verify_registry(
            server=spec["server"],
            credentials=credentials,
            insecure=bool(spec.get("insecure")),
            ca_bundle=self.ctx.settings.registry_ca_bundle,
            allow_private_hosts=self.ctx.settings.allow_private_hosts,
        )


def _write(ctx: Context, resource: object, obj: JSON, status: JSON) -> None:
    """Status only when it changed; these kinds have no machine, so no ledger rows."""
    write_status(ctx, resource, obj, status, transition=None, project="", catch_up=LedgerCatchUp())
