"""Kapsa at scale: N Projects of 3 environments each, converged from nothing.

    .venv/bin/python -m bench.scale [--projects 1000] [--workers 4] [--timeout 600] [--no-docs]

On a fresh local stack (real control plane, git daemon and registry on 127.0.0.1; SIMULATORS
for kpack, kubelet and cert-manager answering at once) with the operator in a child process of
its own: N repositories, then N Projects created back to back through the API; measured are
the seconds until every Project and all 3N Environments are Running, the operator's peak RSS
(VmHWM of its process), API requests per reconcile, and the requests of one no-change resync.

Goals: all Running in under 5 minutes on 2 cores; peak RSS under 256 MiB; a no-change resync
with zero writes and no per-object GET.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench._harness import (
    ENVIRONMENTS,
    OperatorChild,
    Report,
    Watch,
    command_line,
    load,
    machine,
    minus,
    phase_is,
    project_doc,
    spread,
    stack,
    verbs,
)
from kapsa.k8s.resources import ENVIRONMENT, PROJECT

WRITES = ("POST", "PUT", "PATCH", "DELETE")
GOAL_SECONDS = 300
GOAL_RSS_MIB = 256


def settle_and_resync(op: OperatorChild, out: Report, *, base: dict[str, Any], n: int) -> None:
    """Once converged: requests per reconcile until the queue drains, then a no-change resync."""
    op.idle(quiet=1.0, timeout=300)
    settled = op.stats()
    requests = minus(settled["requests"], base["requests"])
    reconciles = minus(settled["reconciles"], base["reconciles"])
    calls = sum(v for k, v in requests.items() if k != "WATCH")
    out(f"  reconciles until settled: {sum(reconciles.values())} ({verbs(reconciles)})")
    out(f"  API requests until settled: {verbs(requests)}")
    out(
        f"  API requests per reconcile: {calls / max(sum(reconciles.values()), 1):.2f} "
        f"(per Project: {calls / n:.1f})"
    )

    before = op.stats()
    resync_started = time.perf_counter()
    op.call("resync")
    op.idle(quiet=1.0, timeout=300)
    resync_seconds = time.perf_counter() - resync_started - 1.0
    after = op.stats()
    by_verb = minus(after["requests"], before["requests"])
    by_resource = minus(after["by_resource"], before["by_resource"])
    resync_reconciles = minus(after["reconciles"], before["reconciles"])
    writes = sum(v for k, v in by_verb.items() if k in WRITES)
    gets = sum(v for k, v in by_resource.items() if k.startswith("GET "))
    out(
        f"no-change resync: {sum(resync_reconciles.values())} reconciles in "
        f"{resync_seconds:.1f} s; requests by verb: {verbs(by_verb)}"
    )
    for key, value in sorted(by_resource.items()):
        out(f"  {value:6d}  {key}")
    met = "met" if writes == 0 and gets == 0 else "NOT met"
    out(f"  goal zero writes, no per-object GET: {met} ({writes} writes, {gets} GETs)")
    peak = after["vmhwm_kib"] / 1024
    out(
        f"operator peak RSS (VmHWM) {peak:.0f} MiB, now {after['vmrss_kib'] / 1024:.0f} "
        f"MiB; goal under {GOAL_RSS_MIB} MiB: {'met' if peak < GOAL_RSS_MIB else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--projects", type=int, default=1000, help="Projects, 3 environments each")
    parser.add_argument("--workers", type=int, default=4, help="operator workers")
    parser.add_argument("--timeout", type=float, default=600, help="give up converging after")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args()
    n = args.projects
    out = Report()
    out(f"machine: {machine()}")
    out(f"command: {command_line()}")
    out(f"at start: {load()}")
    out(
        f"{n} Projects x {len(ENVIRONMENTS)} environments; operator in a child process, "
        f"{args.workers} workers; SIMULATORS answer at once"
    )
    with stack("scale") as s:
        assert s.kube is not None and s.platform is not None
        names = [f"app-{i:04d}" for i in range(n)]
        started = time.perf_counter()
        s.seed_repos(names)
        print(f"{n} repositories in {time.perf_counter() - started:.1f} s", flush=True)
        op = OperatorChild(s, workers=args.workers).start()
        try:
            s.wait_platform()
            op.idle(quiet=1.0)
            base = op.stats()
            envs = Watch(s.kube, ENVIRONMENT).start()
            projects = Watch(s.kube, PROJECT).start()
            envs_running = envs.track(phase_is("Running"))
            projects_running = projects.track(phase_is("Running"))
            created: dict[str, float] = {}
            started = time.perf_counter()
            for name in names:
                s.kube.create(
                    PROJECT, project_doc(name, url=s.git.url_for(name), platform=s.platform)
                )
                created[name] = time.perf_counter()
            create_seconds = time.perf_counter() - started
            print(f"{n} Projects created in {create_seconds:.1f} s", flush=True)
            deadline = started + args.timeout
            want_envs = n * len(ENVIRONMENTS)
            ticks = 0
            while time.perf_counter() < deadline:
                done = envs.wait(envs_running, want_envs, timeout=10) and projects.wait(
                    projects_running, n, timeout=1
                )
                stats = op.stats()
                line = (
                    f"  {time.perf_counter() - started:6.1f} s: {len(envs_running)}/{want_envs} "
                    f"Environments, {len(projects_running)}/{n} Projects Running; "
                    f"queue {stats['queue']}, RSS {stats['vmrss_kib'] / 1024:.0f} MiB, "
                    f"{load()}"
                )
                ticks += 1
                # Every minute into the docs too, so a run that does not converge shows its pace.
                if ticks % 6 == 0:
                    out(line)
                else:
                    print(line, flush=True)
                if done:
                    break
            converged = len(envs_running) >= want_envs and len(projects_running) >= n
            last = max([*envs_running.values(), *projects_running.values()], default=started)
            stats = op.stats()
            requests = minus(stats["requests"], base["requests"])
            reconciles = minus(stats["reconciles"], base["reconciles"])
            if converged:
                total = last - started
                met = "met" if total < GOAL_SECONDS else "NOT met"
                out(
                    f"converged: all {n} Projects and {want_envs} Environments Running "
                    f"{total:.1f} s after the first create ({last - max(created.values()):.1f} s "
                    f"after the last; creating them took {create_seconds:.1f} s)"
                )
                out(f"  goal under {GOAL_SECONDS} s: {met}")
            else:
                out(
                    f"NOT converged within {args.timeout:.0f} s: {len(envs_running)}/{want_envs} "
                    f"Environments and {len(projects_running)}/{n} Projects Running"
                )
                window = [t for t in envs_running.values() if t > deadline - 120]
                if window:
                    rate = len(window) / 120
                    left = (want_envs - len(envs_running)) / rate
                    out(
                        f"  EXTRAPOLATED, not measured: at the last 120 s's pace "
                        f"({rate:.2f} Environments Running/s) the rest would take about "
                        f"{left:.0f} s more, about {args.timeout + left:.0f} s in all"
                    )
            per_project = [
                max([t for (ns, _), t in envs_running.items() if ns == name], default=0)
                - created[name]
                for name in names
                if sum(1 for (ns, _) in envs_running if ns == name) == len(ENVIRONMENTS)
            ]
            if per_project:
                out(
                    f"  per Project, its create -> its 3 Environments Running: "
                    f"{spread(per_project)}"
                )
            if converged:
                settle_and_resync(op, out, base=base, n=n)
            else:
                calls = sum(v for k, v in requests.items() if k != "WATCH")
                out(f"  reconciles so far: {sum(reconciles.values())} ({verbs(reconciles)})")
                out(f"  API requests so far: {verbs(requests)}")
                out(
                    "  API requests per reconcile so far: "
                    f"{calls / max(sum(reconciles.values()), 1):.2f}"
                )
                out("no-change resync: not measured (the queue had not drained)")
                peak = stats["vmhwm_kib"] / 1024
                out(
                    f"operator peak RSS (VmHWM) so far {peak:.0f} MiB; goal under "
                    f"{GOAL_RSS_MIB} MiB: {'met so far' if peak < GOAL_RSS_MIB else 'NOT met'}"
                )
            envs.stop()
            projects.stop()
        finally:
            op.stop()
        out(f"at end: {load()}")
        # Written before the servers stop, so a run cut short in tear-down keeps its figures.
        if not args.no_docs:
            out.write_section(
                f"scale-{n}",
                f"Scale: {n} Projects (bench/scale.py)",
                intro=(
                    f"Goals: all Running in under {GOAL_SECONDS // 60} minutes on 2 cores; "
                    f"operator peak RSS under {GOAL_RSS_MIB} MiB; a no-change resync with zero "
                    "writes and no per-object GET."
                ),
            )


if __name__ == "__main__":
    main()
