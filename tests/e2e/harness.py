"""Kapsa as users meet it: a real operator process, driven through kubectl.

The operator runs as `kapsa operator` in its own process (so tests can kill -9 it); the kpack,
kubelet and cert-manager SIMULATORS run in the test process against the same API server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from kapsa.controlplane import ControlPlane
from kapsa.ledger import Entry, Ledger
from tests.waiting import wait_until

KAPSA = str(Path(sys.executable).with_name("kapsa"))


class OperatorProcess:
    """`kapsa operator` in a child process, with its log kept for failure messages."""

    def __init__(
        self,
        *,
        control_plane: ControlPlane,
        ledger_url: str,
        workdir: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.control_plane = control_plane
        self.ledger_url = ledger_url
        self.workdir = workdir
        self.extra = extra or []
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [
            KAPSA,
            "operator",
            "--kubeconfig",
            str(self.control_plane.kubeconfig),
            "--ledger",
            self.ledger_url,
            "--allow-insecure-sources",
            "--allow-private-hosts",
            "--git-cache",
            str(self.workdir / "git-cache"),
            "--resync-seconds",
            "30",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            "0",
            *self.extra,
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        return self

    def url(self) -> str:
        """Where this process serves health, metrics, webhooks and the ledger API."""
        match = wait_until(
            lambda: re.search(r"http on 127\.0\.0\.1:(\d+)", self.log.read_text()),
            timeout=30,
            message="the operator's HTTP port in its log",
        )
        return f"http://127.0.0.1:{match.group(1)}"

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def project_yaml(
    *,
    name: str,
    url: str,
    environments: list[dict[str, Any]],
    poll: str = "1s",
    extra_spec: dict[str, Any] | None = None,
) -> str:
    doc = {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Project",
        "metadata": {"name": name},
        "spec": {
            "source": {"git": {"url": url}, "pollInterval": poll},
            "build": {"registryRef": {"name": "local"}, "repository": f"apps/{name}"},
            "domainPoolRef": {"name": "apps"},
            "app": {"port": 8080, "rolloutDeadline": "20s"},
            "environments": environments,
            **(extra_spec or {}),
        },
    }
    return yaml.safe_dump(doc)


def get(control_plane: ControlPlane, *args: str) -> Any:
    out = control_plane.kubectl("get", *args, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for entry in ((obj or {}).get("status") or {}).get("conditions", []):
        if entry["type"] == type_:
            return dict(entry)
    return {}


def history(ledger_url: str, project: str) -> list[Entry]:
    ledger = Ledger.open(ledger_url)
    try:
        return ledger.history(project=project)
    finally:
        ledger.close()


def moves(entries: list[Entry], *, kind: str, name: str) -> list[tuple[str, str, str]]:
    return [
        (e.from_state, e.to_state, e.trigger) for e in entries if e.kind == kind and e.name == name
    ]


PLATFORM = textwrap.dedent(
    """
    apiVersion: cert-manager.io/v1
    kind: ClusterIssuer
    metadata: {name: letsencrypt-test}
    spec: {selfSigned: {}}
    ---
    apiVersion: kapsa.io/v1alpha1
    kind: DomainPool
    metadata: {name: apps}
    spec:
      baseDomain: apps.corp.com
      clusterIssuerRef: {name: letsencrypt-test}
      ingressClassName: nginx
    """
)
