"""The operator's flows, timed: first deployment, push to rollout, and a resync with no change.

    .venv/bin/python -m bench.flows [--repeats 5] [--pushes 10] [--workers 4] [--no-docs]

On a fresh local stack (real kube-apiserver + etcd + kube-controller-manager, git daemon,
docker-registry, all on 127.0.0.1; SIMULATORS for kpack, kubelet and cert-manager answering at
once) with the operator in a child process of its own (bench/_operator.py):

(a) seconds from `kubectl apply` of a 3-environment Project to all three Environments Running;
(b) seconds from a commit written to the repository to the two auto-sync Deployments carrying
    it, with the poll triggered directly (Operator.poll, what a webhook does), and with the
    scheduler's own poll at pollInterval 1s for comparison;
(c) API requests of Operator.resync() once everything is Running and the queue is drained,
    per verb and per resource, and again after one unchanged poll of every Project.

Then on a second stack with a real node (containerd, runc, kubelet, kube-proxy; the kubelet is
not simulated there), in the same run:

(d) seconds from `kubectl apply` of the same Project to all three Environments Running, their
    pods ready by the kubelet's probes;
(e) seconds from a commit written (poll triggered directly) to both auto-sync apps answering
    with the new commit through their Services.

Goals: (c) zero writes and zero per-object GETs.
"""

from __future__ import annotations

import argparse
import contextlib
import time

from bench._harness import (
    ENVIRONMENTS,
    OperatorChild,
    Report,
    Stack,
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
    yaml_of,
)
from kapsa.errors import ControlPlaneError
from kapsa.k8s.client import JSON
from kapsa.k8s.manifests import ANNOTATION_COMMIT, LABEL_MANAGED
from kapsa.k8s.resources import DEPLOYMENT, ENVIRONMENT, PROJECT, SERVICE

AUTO_SYNC = [e["name"] for e in ENVIRONMENTS if e["autoSync"]]
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def first_deployments(
    s: Stack, op: OperatorChild, envs: Watch, out: Report, repeats: int, *, label: str = "(a)"
) -> None:
    assert s.platform is not None
    samples = []
    for i in range(repeats):
        name = f"first-{label.strip('()')}-{i}"
        s.seed_repos([name])
        seen = envs.track(
            lambda obj, ns=name: obj["metadata"]["namespace"] == ns and phase_is("Running")(obj)
        )
        started = time.perf_counter()
        s.plane.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml_of([project_doc(name, url=s.git.url_for(name), platform=s.platform)]),
        )
        applied = time.perf_counter() - started
        if not envs.wait(seen, len(ENVIRONMENTS), timeout=120):
            raise RuntimeError(f"{name}: environments not Running in 120 s\n{op.tail()}")
        samples.append(max(seen.values()) - started)
        envs.untrack(seen)
        print(f"  {name}: {samples[-1]:.3f} s (kubectl apply itself {applied:.3f} s)", flush=True)
        op.idle()
    out(f"{label} kubectl apply of a 3-environment Project -> all 3 Environments Running")
    out(f"    {spread(samples)}")
    out("    (includes kubectl's own start-up; one Project at a time, the stack otherwise idle)")


def pushes(
    s: Stack,
    op: OperatorChild,
    deployments: Watch,
    envs: Watch,
    *,
    name: str,
    count: int,
    trigger: bool,
) -> tuple[list[float], list[float]]:
    """Commits on main; seconds to both auto-sync Deployments carrying it, and to Running."""
    to_deployment, to_running = [], []
    for k in range(count):
        commit = s.git.commit(
            name, branch="main", files={"app.py": f"print({k})\n"}, message=f"change {k}"
        )

        def carries(obj: JSON, c: str = commit) -> bool:
            annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
            return obj["metadata"]["namespace"] == name and annotations.get(ANNOTATION_COMMIT) == c

        def runs(obj: JSON, c: str = commit) -> bool:
            status = obj.get("status") or {}
            return (
                obj["metadata"]["namespace"] == name
                and status.get("phase") == "Running"
                and status.get("commit") == c
            )

        seen_deployments = deployments.track(carries)
        seen_envs = envs.track(runs)
        started = time.perf_counter()
        if trigger:
            op.call("poll", name=name)
        ok = deployments.wait(seen_deployments, len(AUTO_SYNC), timeout=60) and envs.wait(
            seen_envs, len(AUTO_SYNC), timeout=60
        )
        if not ok:
            raise RuntimeError(f"{name}: push {k} not rolled out in 60 s\n{op.tail()}")
        to_deployment.append(max(seen_deployments.values()) - started)
        to_running.append(max(seen_envs.values()) - started)
        deployments.untrack(seen_deployments)
        envs.untrack(seen_envs)
        op.idle()
    return to_deployment, to_running


def push_flows(
    s: Stack, op: OperatorChild, deployments: Watch, envs: Watch, out: Report, count: int
) -> None:
    assert s.platform is not None and s.kube is not None
    for name, poll in (("push-webhook", "1h"), ("push-poll-1s", "1s")):
        s.seed_repos([name])
        seen = envs.track(
            lambda obj, ns=name: obj["metadata"]["namespace"] == ns and phase_is("Running")(obj)
        )
        s.plane.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml_of(
                [project_doc(name, url=s.git.url_for(name), platform=s.platform, poll=poll)]
            ),
        )
        envs.wait(seen, len(ENVIRONMENTS), timeout=120)
        envs.untrack(seen)
    op.idle()
    out(
        f"(b) commit written -> both auto-sync Deployments ({', '.join(AUTO_SYNC)}) carry it; "
        "-> both Environments Running on it"
    )
    for name, trigger, label in (
        ("push-webhook", True, "poll triggered directly (Operator.poll)"),
        ("push-poll-1s", False, "scheduler poll, pollInterval 1s"),
    ):
        to_deployment, to_running = pushes(
            s, op, deployments, envs, name=name, count=count, trigger=trigger
        )
        out(f"    {label}:")
        out(f"      Deployments updated   {spread(to_deployment)}")
        out(f"      Environments Running  {spread(to_running)}")
    # The 1s poller would write lastPollTime during (c): slow it down before measuring.
    s.kube.merge_patch(PROJECT, "push-poll-1s", {"spec": {"source": {"pollInterval": "1h"}}})
    time.sleep(1.5)
    op.idle(quiet=1.0)


def served_pushes(s: Stack, op: OperatorChild, out: Report, *, count: int) -> None:
    """Commits on main; seconds until both auto-sync apps answer with them, asked as pods would."""
    assert s.platform is not None and s.kube is not None and s.plane.node is not None
    name = "served"
    s.seed_repos([name])
    s.plane.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml_of([project_doc(name, url=s.git.url_for(name), platform=s.platform, poll="1h")]),
    )
    ips = {}
    deadline = time.monotonic() + 180
    while len(ips) < len(AUTO_SYNC) and time.monotonic() < deadline:
        for env in AUTO_SYNC:
            service = s.kube.get(SERVICE, env, namespace=name)
            if service is not None:
                ips[env] = service["spec"]["clusterIP"]
        time.sleep(0.2)
    samples = []
    for k in range(count):
        commit = s.git.commit(
            name, branch="main", files={"greeting.txt": f"change {k}\n"}, message=f"change {k}"
        )
        started = time.perf_counter()
        op.call("poll", name=name)
        waiting = dict(ips)
        limit = time.monotonic() + 120
        while waiting and time.monotonic() < limit:
            for env, ip in list(waiting.items()):
                with contextlib.suppress(ControlPlaneError):
                    if f"commit: {commit}" in s.plane.node.netns.fetch(f"http://{ip}/", timeout=1):
                        del waiting[env]
            time.sleep(0.05)
        if waiting:
            raise RuntimeError(f"{name}: {sorted(waiting)} not serving {commit[:7]}\n{op.tail()}")
        samples.append(time.perf_counter() - started)
        print(f"  push {k}: {samples[-1]:.3f} s", flush=True)
        op.idle()
    out(f"(e) commit written -> both auto-sync apps ({', '.join(AUTO_SYNC)}) answer with it")
    out(f"    {spread(samples)}  (poll triggered directly; new pods pulled, probed, routed)")


def resync_requests(op: OperatorChild, out: Report, *, projects: list[str]) -> None:
    out("(c) API requests of one Operator.resync(), everything Running, queue drained")
    for label, before_resync in (
        ("nothing changed", None),
        ("after one unchanged poll of every Project", projects),
    ):
        op.idle(quiet=1.0)
        if before_resync:
            for name in before_resync:
                op.call("poll", name=name)
            op.idle(quiet=1.0)
        before = op.stats()
        op.call("resync")
        op.idle(quiet=1.0)
        after = op.stats()
        by_verb = minus(after["requests"], before["requests"])
        by_resource = minus(after["by_resource"], before["by_resource"])
        reconciles = minus(after["reconciles"], before["reconciles"])
        writes = sum(v for k, v in by_verb.items() if k in WRITES)
        gets = {k: v for k, v in by_resource.items() if k.startswith("GET ")}
        out(f"    {label}: {sum(reconciles.values())} reconciles ({verbs(reconciles)})")
        out(f"      requests by verb: {verbs(by_verb)}")
        for key, value in sorted(by_resource.items()):
            out(f"        {value:5d}  {key}")
        verdict = "met" if writes == 0 and not gets else "NOT met"
        out(
            f"      goal zero writes, zero per-object GETs: {verdict} "
            f"({writes} writes, {sum(gets.values())} GETs)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5, help="first deployments timed")
    parser.add_argument("--pushes", type=int, default=10, help="pushes timed per poll mode")
    parser.add_argument("--workers", type=int, default=4, help="operator workers")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args()
    out = Report()
    out(f"machine: {machine()}")
    out(f"command: {command_line()}")
    out(f"at start: {load()}")
    out(f"operator: in a child process, {args.workers} workers; SIMULATORS answer at once")
    with stack("flows") as s:
        assert s.kube is not None
        op = OperatorChild(s, workers=args.workers).start()
        try:
            s.wait_platform()
            envs = Watch(s.kube, ENVIRONMENT).start()
            deployments = Watch(s.kube, DEPLOYMENT, label_selector=f"{LABEL_MANAGED}=kapsa").start()
            first_deployments(s, op, envs, out, args.repeats)
            push_flows(s, op, deployments, envs, out, args.pushes)
            names = [p["metadata"]["name"] for p in s.kube.list(PROJECT)["items"]]
            resync_requests(op, out, projects=names)
            stats = op.stats()
            out(
                f"operator peak RSS (VmHWM) {stats['vmhwm_kib'] / 1024:.0f} MiB; "
                f"requests over the whole run: {verbs(stats['requests'])}"
            )
            envs.stop()
            deployments.stop()
        finally:
            op.stop()
    out("on a real node (containerd, runc, kubelet, kube-proxy); kpack and cert-manager SIMULATED")
    with stack("flows-node", node=True) as s:
        op = OperatorChild(s, workers=args.workers).start()
        try:
            s.wait_platform()
            assert s.kube is not None
            envs = Watch(s.kube, ENVIRONMENT).start()
            first_deployments(s, op, envs, out, args.repeats, label="(d)")
            served_pushes(s, op, out, count=args.pushes)
            envs.stop()
        finally:
            op.stop()
        out(f"at end: {load()}")
        # Written before the servers stop, so a run cut short in tear-down keeps its figures.
        if not args.no_docs:
            out.write_section(
                "flows",
                "The operator's flows (bench/flows.py)",
                intro=(
                    "Goals: no-change resync with zero writes and zero per-object GETs; webhook to "
                    "build updated under 1 s p50 (see polling)."
                ),
            )


if __name__ == "__main__":
    main()
