"""What the operator benchmarks share: the machine line, the local stack, the operator child,
watch-based waiting, and the section of docs/benchmarks.md each script owns.

The stack is assembled with kapsa.sandbox.stack's parts (`install_crds`, `apply_platform`,
`start_simulators`), as `kapsa sandbox` and the tests assemble it: a real control plane, git
daemon and docker-registry on 127.0.0.1, SIMULATORS for kpack, the kubelet and cert-manager
(answering at once), and the operator in a child process of its own (bench/_operator.py) so
that its memory is its own and its API requests can be read while it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from kapsa.controlplane import ControlPlane, find_or_build_assets
from kapsa.k8s.client import JSON, Kube
from kapsa.k8s.informer import Informer
from kapsa.k8s.resources import DOMAIN_POOL, REGISTRY, ResourceType
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.stack import (
    Platform,
    Simulators,
    apply_platform,
    install_crds,
    sample_files,
    start_simulators,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
APP = sample_files()
#: Three environments on one branch: two follow it, prod is promoted by hand.
ENVIRONMENTS = [
    {"name": "dev", "branch": "main", "autoSync": True},
    {"name": "staging", "branch": "main", "autoSync": True},
    {"name": "prod", "branch": "main", "autoSync": False},
]


# -- the machine -----------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = int(meminfo.read_text().split()[1])
        memory = f", {total / 1024 / 1024:.1f} GiB RAM"
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "diff", "HEAD", "--", "kapsa"],
        capture_output=True,
        check=False,
    ).stdout
    untracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "kapsa"],
        capture_output=True,
        check=False,
    ).stdout
    tree = hashlib.sha1(dirty + untracked, usedforsecurity=False).hexdigest()[:8]
    kube = find_or_build_assets(build=False).kube_apiserver.parent.parent.name
    return (
        f"{os.cpu_count()} cores, {model}{memory}; Python {platform.python_version()}, "
        f"{git.stdout.strip()}, {kube}; {platform.platform()}; "
        f"checkout {head}"
        + (f" + uncommitted changes in kapsa/ (diff {tree})" if dirty or untracked else "")
    )


def load() -> str:
    """Other work on the machine competes for the same cores: say how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def command_line() -> str:
    """The command that reproduces this run, as it must be typed: benchmarks run as modules."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = ["-m", ".".join(script.relative_to(ROOT).with_suffix("").parts)]
    except ValueError:
        shown = [str(script)]
    return " ".join([".venv/bin/python", *shown, *sys.argv[1:]])


# -- figures ---------------------------------------------------------------------------------


def quantile(samples: list[float], q: float) -> float:
    """The q-th quantile (0..1), linear between closest ranks; exact for tiny samples."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(samples: list[float], unit: str = "s") -> str:
    return (
        f"p50 {statistics.median(samples):.3f} {unit}, p99 {quantile(samples, 0.99):.3f} {unit}, "
        f"max {max(samples):.3f} {unit} (n={len(samples)})"
    )


def verbs(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{verb} {count}" for verb, count in sorted(counts.items()))


def minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) != before.get(k, 0)
    }


class Report:
    """Lines printed as they come, and kept for the script's section of docs/benchmarks.md."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write_section(self, name: str, title: str, *, intro: str = "") -> None:
        """Replace this script's section of docs/benchmarks.md, leaving the others alone."""
        start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
        body = "\n".join(
            [
                start,
                f"## {title}",
                "",
                *([intro, ""] if intro else []),
                "```",
                *self.lines,
                "```",
                end,
            ]
        )
        text = (
            DOCS.read_text(encoding="utf-8")
            if DOCS.exists()
            else (
                "# Benchmarks\n\nEach section below is written by the script it names, from its "
                "last run; the figures are that run's, on the machine it prints.\n"
            )
        )
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m: body, text)
        else:
            text = text.rstrip("\n") + "\n\n" + body + "\n"
        DOCS.write_text(text, encoding="utf-8")
        print(f"(section '{name}' of {DOCS.relative_to(ROOT)} updated)")


# -- objects ---------------------------------------------------------------------------------


def project_doc(name: str, *, url: str, platform: Platform, poll: str = "1h") -> JSON:
    return {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Project",
        "metadata": {"name": name},
        "spec": {
            "source": {"git": {"url": url}, "pollInterval": poll},
            "build": {"registryRef": {"name": platform.registry}, "repository": f"apps/{name}"},
            "domainPoolRef": {"name": platform.domain_pool},
            "app": {"port": 8080, "rolloutDeadline": "5m"},
            "environments": ENVIRONMENTS,
        },
    }


def yaml_of(docs: list[JSON]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


# -- the stack -------------------------------------------------------------------------------


class Stack:
    """Control plane, git server, registry, platform objects and SIMULATORS; no operator.

    With `node`, a real node runs the pods and the kubelet is not simulated.
    """

    def __init__(self, workdir: Path, *, node: bool = False) -> None:
        self.workdir = workdir
        self.source = snapshot_source(workdir / "src")
        self.plane = ControlPlane(
            assets=find_or_build_assets(),
            workdir=workdir / "control-plane",
            node=node,
        )
        self.git = GitServer(workdir / "git")
        self.registry = RegistryServer(
            workdir=workdir / "registry", username="kapsa", password=secrets.token_urlsafe(18)
        )
        self.kube: Kube | None = None
        self.platform: Platform | None = None
        self.simulators: Simulators | None = None

    def start(self) -> Stack:
        started = time.perf_counter()
        self.plane.start()
        install_crds(self.plane)
        self.kube = Kube.from_kubeconfig(str(self.plane.kubeconfig))
        self.git.start()
        self.registry.start()
        if self.plane.node is not None:
            self.plane.node.trust_registry(port=self.registry.port, tls=self.registry.tls)
        self.platform = apply_platform(self.plane, self.registry)
        # The SIMULATORS get a client of their own, so the bench's counts stay apart.
        self.simulators = start_simulators(
            Kube.from_kubeconfig(str(self.plane.kubeconfig)),
            registry_server=self.registry,
            git_server=self.git,
            node=self.plane.node is not None,
        )
        print(
            f"stack up in {time.perf_counter() - started:.1f} s "
            f"(kube-apiserver {self.plane.server}, git daemon :{self.git.port}, "
            f"registry {self.registry.server})",
            flush=True,
        )
        return self

    def stop(self) -> None:
        if self.simulators is not None:
            self.simulators.stop()
        self.registry.stop()
        self.git.stop()
        self.plane.stop()

    def seed_repos(self, names: list[str], *, template: str = "template") -> None:
        """Repositories `names`, each a copy of one first commit (created once, copied by file)."""
        if not self.git.path_for(template).exists():
            self.git.create_repo(template, files=APP)
        for name in names:
            target = self.git.path_for(name)
            if not target.exists():
                shutil.copytree(self.git.path_for(template), target)

    def wait_platform(self, timeout: float = 60.0) -> None:
        """Registry verified and DomainPool Ready: what the operator must have done first."""
        assert self.kube is not None and self.platform is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            registry = self.kube.get(REGISTRY, self.platform.registry) or {}
            pool = self.kube.get(DOMAIN_POOL, self.platform.domain_pool) or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (pool.get("status") or {}).get("conditions", [])
            )
            if (registry.get("status") or {}).get("verified") and ready:
                return
            time.sleep(0.1)
        raise RuntimeError("Registry not verified / DomainPool not Ready in time")


def snapshot_source(target: Path) -> Path:
    """kapsa/ and bench/ as they are now, for the operator child: the checkout is shared and
    may change while a run is on, and the child must run the code the run started with."""
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("kapsa", "bench"):
        shutil.copytree(ROOT / package, target / package, ignore=ignore)
    return target


@contextmanager
def stack(prefix: str, keep: bool = False, *, node: bool = False) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix=f"kapsa-bench-{prefix}-"))
    # SIGTERM runs the clean-up below too, so no server outlives the run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    the_stack = Stack(tmp, node=node)
    try:
        yield the_stack.start()
    finally:
        the_stack.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# -- the operator child ----------------------------------------------------------------------


class OperatorChild:
    """bench/_operator.py in a child process, driven by JSON lines over its stdin and stdout."""

    def __init__(self, stack: Stack, *, workers: int = 4, resync_seconds: float = 3600.0) -> None:
        self.stack = stack
        self.log = stack.workdir / "operator.log"
        self.args = [
            sys.executable,
            "-m",
            "bench._operator",
            "--kubeconfig",
            str(stack.plane.kubeconfig),
            "--ledger",
            f"sqlite:///{stack.workdir / 'ledger.db'}",
            "--git-cache",
            str(stack.workdir / "git-cache"),
            "--workers",
            str(workers),
            "--resync",
            f"{resync_seconds:g}s",
        ]
        self.process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> OperatorChild:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=self.stack.source,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )
        where = self.call("ready")
        print(f"operator child pid {self.process.pid}, running {where}", flush=True)
        return self

    def call(self, op: str, **args: Any) -> Any:
        assert self.process is not None and self.process.stdin and self.process.stdout
        with self._lock:
            self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"operator child exited; log tail:\n{self.tail()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"operator child: {answer['error']}")
        return answer["result"]

    def stats(self) -> JSON:
        return dict(self.call("stats"))

    def idle(self, *, quiet: float = 0.5, timeout: float = 120.0) -> float:
        """Waits until no key is queued or being reconciled for `quiet` seconds."""
        return float(self.call("idle", quiet=quiet, timeout=timeout))

    def vmhwm_kib(self) -> int:
        assert self.process is not None
        return _proc_status(self.process.pid, "VmHWM")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.call("stop")
            self.process.wait(15)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _proc_status(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- watching ----------------------------------------------------------------------------------


class Watch:
    """A watch cache in the bench process that notes when a predicate first held for each object."""

    def __init__(
        self, kube: Kube, resource: ResourceType, *, label_selector: str | None = None
    ) -> None:
        self.informer = Informer(
            kube, resource, on_event=self._on_event, label_selector=label_selector
        )
        self._cond = threading.Condition()
        self._waiters: list[tuple[Callable[[JSON], bool], dict[tuple[str, str], float]]] = []

    def start(self) -> Watch:
        self.informer.start()
        self.informer.wait_synced(60)
        return self

    def stop(self) -> None:
        self.informer.stop()

    def _on_event(self, _event: str, obj: JSON) -> None:
        now = time.perf_counter()
        meta = obj["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        with self._cond:
            for predicate, seen in self._waiters:
                if key not in seen and predicate(obj):
                    seen[key] = now
            self._cond.notify_all()

    def track(self, predicate: Callable[[JSON], bool]) -> dict[tuple[str, str], float]:
        """From now on (and for what the cache holds already), when each object first matched."""
        seen: dict[tuple[str, str], float] = {}
        now = time.perf_counter()
        with self._cond:
            for obj in self.informer.items():
                meta = obj["metadata"]
                if predicate(obj):
                    seen[(meta.get("namespace") or "", meta["name"])] = now
            self._waiters.append((predicate, seen))
        return seen

    def untrack(self, seen: dict[tuple[str, str], float]) -> None:
        with self._cond:
            self._waiters = [w for w in self._waiters if w[1] is not seen]

    def wait(self, seen: dict[tuple[str, str], float], count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(seen) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 1.0))
        return True


def phase_is(phase: str) -> Callable[[JSON], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase
