"""Who may read the internal listener: a bearer token checked the way kube-rbac-proxy does.

The internal listener serves Prometheus metrics and the ledger API. Bound to loopback it needs no
check (only `kubectl port-forward`, which the API server authorizes, reaches it). Bound to the
pod network it asks the API server about every caller: a TokenReview says whose token it is, a
SubjectAccessReview whether that user may `get` the non-resource path `/metrics`, or `get` the
Project whose history is asked for (so a team that can read its Project reads its ledger, and
no other). Answers are cached briefly, keyed by the token's hash, so a scrape every few seconds
costs the API server two requests a minute, and a flood of bad tokens is answered from the
cache.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kapsa.k8s.client import ApiError, Kube
from kapsa.web.messages import Request, Response, error

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 (an API path)
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


@dataclass(frozen=True)
class Access:
    """What a request reads: a non-resource `path`, or the history of `project`."""

    path: str | None = None
    project: str | None = None

    def attributes(self) -> dict[str, Any]:
        if self.project is not None:
            return {
                "resourceAttributes": {
                    "group": "kapsa.io",
                    "resource": "projects",
                    "verb": "get",
                    "name": self.project,
                }
            }
        return {"nonResourceAttributes": {"path": self.path or "/", "verb": "get"}}

    def describe(self) -> str:
        if self.project is not None:
            return f"get projects.kapsa.io/{self.project}"
        return f"get {self.path}"


class KubeAuthorizer:
    def __init__(
        self,
        kube: Kube,
        *,
        ttl: float = 60.0,
        capacity: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, Access | None], tuple[float, Any]] = OrderedDict()

    def check(self, request: Request, access: Access) -> Response | None:
        """None when the caller may; else the 401, 403 or 503 to answer."""
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return error(
                HTTPStatus.UNAUTHORIZED,
                "send a Kubernetes bearer token (Authorization: Bearer ...)",
            )
        digest = hashlib.sha256(token.encode()).hexdigest()
        try:
            user = self._cached((digest, None), lambda: self._review(token))
            if user is None:
                return error(HTTPStatus.UNAUTHORIZED, "the API server did not accept this token")
            if not self._cached((digest, access), lambda: self._allowed(user, access)):
                name = user.get("username", "this user")
                return error(HTTPStatus.FORBIDDEN, f"{name} may not {access.describe()}")
        except ApiError as exc:
            return error(HTTPStatus.SERVICE_UNAVAILABLE, f"cannot check the token now: {exc}")
        return None

    def _cached(self, key: tuple[str, Access | None], compute: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = compute()
        with self._lock:
            self._cache[key] = (now + self._ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return value

    def _review(self, token: str) -> dict[str, Any] | None:
        answer = self._kube.request(
            "POST",
            TOKEN_REVIEWS,
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token},
            },
        )
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        user: dict[str, Any] = status.get("user") or {}
        return user

    def _allowed(self, user: dict[str, Any], access: Access) -> bool:
        spec: dict[str, Any] = {
            "user": user.get("username", ""),
            "groups": user.get("groups", []),
            **access.attributes(),
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        answer = self._kube.request(
            "POST",
            ACCESS_REVIEWS,
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
        )
        return bool((answer.get("status") or {}).get("allowed"))
