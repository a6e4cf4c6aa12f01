"""Polling many repositories, and a push reaching the build by a direct poll trigger.

    .venv/bin/python -m bench.polling [--repos 1000] [--threads 8] [--pushes 20] [--no-docs]

1. One poll cycle over N repositories on the local git daemon (127.0.0.1): every repository
   listed with kapsa.git.remote.list_branches in a thread pool of K, against the baseline of
   `git ls-remote --heads` in a shell loop over the same repositories, in the same run, rounds
   alternating so a noisy neighbour hurts both alike.
2. Latency from a commit written to the repository to the build updated (the kpack Image's
   revision is the new commit) when the poll is triggered directly (Operator.poll, what a
   webhook delivery does), with the operator running in a child process of its own.

Goals: a cycle of 1,000 repositories under 60 s; webhook to build updated under 1 s p50.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench._harness import (
    OperatorChild,
    Report,
    Stack,
    Watch,
    command_line,
    load,
    machine,
    phase_is,
    project_doc,
    spread,
    stack,
    yaml_of,
)
from kapsa.errors import SourceError
from kapsa.git.remote import list_branches
from kapsa.k8s.client import JSON
from kapsa.k8s.manifests import LABEL_MANAGED
from kapsa.k8s.resources import ENVIRONMENT, KPACK_IMAGE

GOAL_CYCLE = 60.0
GOAL_WEBHOOK = 1.0
TIMEOUT = 30.0


def python_cycle(urls: list[str], threads: int) -> tuple[float, int]:
    """Seconds for one cycle, and how many listings failed (a poller retries those later)."""

    def one(url: str) -> bool:
        try:
            return "main" in list_branches(url, timeout=TIMEOUT)
        except SourceError:
            return False

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        listed = list(pool.map(one, urls))
    return time.perf_counter() - started, listed.count(False)


def shell_cycle(urls: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(urls) + "\n")
        listing.flush()
        script = (
            f'n=0; while read -r url; do timeout {TIMEOUT:g} git ls-remote --heads "$url" '
            '> /dev/null || exit 1; n=$((n+1)); done < "$1"; echo $n'
        )
        started = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", script, "loop", listing.name],
            capture_output=True,
            text=True,
            check=True,
            timeout=30 * 60,
        )
        elapsed = time.perf_counter() - started
    if int(done.stdout.strip()) != len(urls):
        raise RuntimeError(f"shell loop listed {done.stdout.strip()} of {len(urls)}")
    return elapsed


def cycles(s: Stack, out: Report, *, repos: int, threads: list[int], rounds: int) -> None:
    names = [f"repo-{i:04d}" for i in range(repos)]
    started = time.perf_counter()
    s.seed_repos(names)
    print(f"{repos} repositories in {time.perf_counter() - started:.1f} s", flush=True)
    urls = [s.git.url_for(name) for name in names]
    python_cycle(urls[:20], threads[0])  # warm-up: imports, page cache
    spent: dict[str, list[float]] = {"shell": []}
    failed: dict[str, int] = {}
    for r in range(rounds):
        spent["shell"].append(shell_cycle(urls))
        print(f"  round {r + 1}: shell loop {spent['shell'][-1]:.1f} s", flush=True)
        for k in threads:
            elapsed, failures = python_cycle(urls, k)
            spent.setdefault(f"K={k}", []).append(elapsed)
            failed[f"K={k}"] = failed.get(f"K={k}", 0) + failures
            print(
                f"  round {r + 1}: list_branches K={k} {elapsed:.1f} s, {failures} failed",
                flush=True,
            )
    baseline = statistics.median(spent["shell"])
    out(
        f"one poll cycle over {repos} repositories on the local git daemon "
        f"(median of {rounds} rounds, alternating):"
    )
    out(
        f"  `git ls-remote --heads` in a bash loop    {baseline:7.2f} s "
        f"({repos / baseline:6.0f} repos/s)"
    )
    for k in threads:
        cycle = statistics.median(spent[f"K={k}"])
        met = "met" if cycle < GOAL_CYCLE else "NOT met"
        out(
            f"  list_branches, thread pool K={k:<3}         {cycle:7.2f} s "
            f"({repos / cycle:6.0f} repos/s, {baseline / cycle:5.2f}x the loop; "
            f"goal under {GOAL_CYCLE:.0f} s: {met}; {failed[f'K={k}']} listings failed)"
        )


def webhook_latency(s: Stack, out: Report, *, pushes: int, projects: int) -> None:
    assert s.kube is not None and s.platform is not None
    names = [f"hook-{i}" for i in range(projects)]
    s.seed_repos(names)
    op = OperatorChild(s).start()
    try:
        s.wait_platform()
        envs = Watch(s.kube, ENVIRONMENT).start()
        images = Watch(s.kube, KPACK_IMAGE, label_selector=f"{LABEL_MANAGED}=kapsa").start()
        seen = envs.track(phase_is("Running"))
        s.plane.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml_of(
                [project_doc(name, url=s.git.url_for(name), platform=s.platform) for name in names]
            ),
        )
        if not envs.wait(seen, 3 * projects, timeout=120):
            raise RuntimeError(f"projects not Running\n{op.tail()}")
        envs.untrack(seen)
        op.idle(quiet=1.0)
        to_build, to_built, poll_call = [], [], []
        for k in range(pushes):
            name = names[k % projects]
            commit = s.git.commit(
                name, branch="main", files={"app.py": f"print({k})\n"}, message=f"change {k}"
            )

            def asked(obj: JSON, ns: str = name, c: str = commit) -> bool:
                return (
                    obj["metadata"]["namespace"] == ns
                    and obj["spec"]["source"]["git"]["revision"] == c
                )

            def built(obj: JSON, ns: str = name, c: str = commit) -> bool:
                return (
                    asked(obj, ns, c)
                    and ":" in ((obj.get("status") or {}).get("latestImage") or "")
                    and (obj.get("status") or {}).get("observedGeneration")
                    == obj["metadata"].get("generation")
                )

            seen_asked, seen_built = images.track(asked), images.track(built)
            started = time.perf_counter()
            poll_call.append(op.call("poll", name=name))
            if not (images.wait(seen_asked, 1, TIMEOUT) and images.wait(seen_built, 1, TIMEOUT)):
                raise RuntimeError(f"push {k}: Image not updated\n{op.tail()}")
            to_build.append(max(seen_asked.values()) - started)
            to_built.append(max(seen_built.values()) - started)
            images.untrack(seen_asked)
            images.untrack(seen_built)
            op.idle(quiet=0.3)
        envs.stop()
        images.stop()
    finally:
        op.stop()
    p50 = statistics.median(to_build)
    out(
        f"commit written -> Operator.poll -> kpack Image asks for the commit "
        f"({pushes} pushes over {projects} Projects, operator otherwise idle):"
    )
    out(f"  build updated (Image revision)          {spread(to_build)}")
    out(f"    goal under {GOAL_WEBHOOK:g} s p50: {'met' if p50 < GOAL_WEBHOOK else 'NOT met'}")
    out(f"  of which Operator.poll (ls-remote)      {spread(poll_call)}")
    out(f"  build finished (SIMULATOR, image pushed) {spread(to_built)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repos", type=int, default=1000, help="repositories in one cycle")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 4, 8, 32],
        help="thread pool sizes K (git daemon serves 32 at once by default)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="cycles timed each way")
    parser.add_argument("--pushes", type=int, default=20, help="pushes timed")
    parser.add_argument("--projects", type=int, default=5, help="Projects the pushes go to")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args()
    out = Report()
    out(f"machine: {machine()}")
    out(f"command: {command_line()}")
    out(f"at start: {load()}")
    with stack("polling") as s:
        cycles(s, out, repos=args.repos, threads=args.threads, rounds=args.rounds)
        webhook_latency(s, out, pushes=args.pushes, projects=args.projects)
        out(f"at end: {load()}")
        # Written before the servers stop, so a run cut short in tear-down keeps its figures.
        if not args.no_docs:
            out.write_section(
                "polling",
                "Polling and webhooks (bench/polling.py)",
                intro=(
                    f"Goals: one poll cycle of 1,000 repositories under {GOAL_CYCLE:.0f} s; "
                    f"webhook (direct poll trigger) to build updated under {GOAL_WEBHOOK:g} s p50."
                ),
            )


if __name__ == "__main__":
    main()
