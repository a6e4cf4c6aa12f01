"""The operator for the benchmarks: `Operator` as `kapsa operator` builds it, in a process of its
own, answering the bench over stdin/stdout (one JSON object a line).

    {"op": "stats"}                -> Kube.requests by verb, requests by verb and resource,
                                      reconciles by kind, VmHWM / VmRSS, queue depth
    {"op": "resync"}               -> Operator.resync()
    {"op": "poll", "name": "x"}    -> Operator.poll("x"), what a webhook delivery does
    {"op": "idle", "quiet": 0.5}   -> returns once no key was queued or reconciling for `quiet` s
    {"op": "stop"}

The bench instruments only from outside: it wraps the client's `request` to also count by
resource, and `Operator._dispatch` to count reconciles (kapsa exposes neither yet).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import kapsa
from kapsa.cli.logs import configure_logging
from kapsa.k8s.client import Kube
from kapsa.ledger import Ledger
from kapsa.reconcile.context import Settings
from kapsa.reconcile.operator import Operator
from kapsa.reconcile.project import Result

KAPSA_NAMESPACE = "kapsa-system"


def resource_of(method: str, path: str) -> str:
    """`GET secrets/<name>`, `PUT environments/<name>/status`, `GET deployments` (a list)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    namespace = ""
    if "namespaces" in parts:
        i = parts.index("namespaces")
        if i + 2 < len(parts):
            namespace = parts[i + 1]
            parts = parts[i + 2 :]
        else:
            parts = parts[i:]
    else:
        parts = parts[3:] if parts and parts[0] == "apis" else parts[2:]
    if not parts:
        return f"{method} ?"
    shown = parts[0]
    if len(parts) > 1:
        # Kapsa's own namespace keeps its names: those objects are few and fixed.
        shown += f"/{parts[1]}" if namespace == KAPSA_NAMESPACE else "/<name>"
    if len(parts) > 2:
        shown += "/" + "/".join(parts[2:])
    if namespace == KAPSA_NAMESPACE:
        shown = f"{KAPSA_NAMESPACE}/{shown}"
    return f"{method} {shown}"


class Instrumented:
    def __init__(self, kube: Kube, operator: Operator) -> None:
        self.kube = kube
        self.operator = operator
        self.by_resource: dict[str, int] = {}
        self.reconciles: dict[str, int] = {}
        self.inflight = 0
        self.last_busy = time.monotonic()
        self._lock = threading.Lock()
        request = kube.request

        def counted_request(method: str, path: str, **kwargs: Any) -> Any:
            key = resource_of(method, path)
            with self._lock:
                self.by_resource[key] = self.by_resource.get(key, 0) + 1
            return request(method, path, **kwargs)

        kube.request = counted_request  # type: ignore[method-assign]
        dispatch = operator._dispatch

        def counted_dispatch(key: Hashable) -> Result:
            assert isinstance(key, tuple)
            with self._lock:
                self.inflight += 1
                self.reconciles[key[0]] = self.reconciles.get(key[0], 0) + 1
            try:
                return dispatch(key)
            finally:
                with self._lock:
                    self.inflight -= 1
                    self.last_busy = time.monotonic()

        operator._dispatch = counted_dispatch  # type: ignore[method-assign]

    def busy(self) -> bool:
        with self._lock:
            inflight = self.inflight
        return inflight > 0 or self.operator.queue.depth() > 0

    def idle(self, quiet: float, timeout: float) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.busy():
                time.sleep(0.02)
                continue
            with self._lock:
                since = time.monotonic() - self.last_busy
            if since >= quiet:
                return time.monotonic() - started
            time.sleep(min(quiet - since, 0.05) + 0.001)
        raise TimeoutError(f"still busy after {timeout:.0f} s")

    def stats(self) -> dict[str, Any]:
        status = Path("/proc/self/status").read_text().splitlines()
        memory = {
            line.split(":")[0]: int(line.split()[1])
            for line in status
            if line.startswith(("VmHWM:", "VmRSS:"))
        }
        with self._lock:
            return {
                "requests": dict(self.kube.requests),
                "by_resource": dict(self.by_resource),
                "reconciles": dict(self.reconciles),
                "vmhwm_kib": memory.get("VmHWM", 0),
                "vmrss_kib": memory.get("VmRSS", 0),
                "queue": self.operator.queue.depth(),
                "inflight": self.inflight,
            }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--git-cache", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--resync-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    configure_logging(level="WARNING")
    logging.getLogger("kapsa").setLevel(logging.WARNING)
    kube = Kube.from_kubeconfig(args.kubeconfig)
    settings = Settings(
        namespace=KAPSA_NAMESPACE,
        allow_insecure_sources=True,
        allow_private_hosts=True,
        git_cache=Path(args.git_cache),
        resync_seconds=args.resync_seconds,
    )
    operator = Operator(
        kube=kube,
        ledger=Ledger.open(args.ledger),
        settings=settings,
        workers=args.workers,
        leader_election=False,
    )
    tools = Instrumented(kube, operator)
    operator.start()
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            result: Any = None
            if op == "ready":
                result = str(Path(kapsa.__file__).parent)
            elif op == "stats":
                result = tools.stats()
            elif op == "resync":
                operator.resync()
            elif op == "poll":
                started = time.perf_counter()
                operator.poll(request["name"])
                result = time.perf_counter() - started
            elif op == "idle":
                result = tools.idle(
                    float(request.get("quiet", 0.5)), float(request.get("timeout", 120))
                )
            elif op == "stop":
                operator.stop()
                out.write(json.dumps({"result": True}) + "\n")
                out.flush()
                return
            else:
                raise ValueError(f"unknown op {op}")
            out.write(json.dumps({"result": result}) + "\n")
        except Exception as error:  # the bench prints it; the child carries on
            out.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
