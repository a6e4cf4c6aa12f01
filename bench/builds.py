"""Dockerfile builds on the real node: the first build, and the rebuild after a one-line change.

    .venv/bin/python -m bench.builds [--repeats 3] [--no-docs]

On a fresh stack with a real node (containerd, runc, kubelet; the Job controller real), the
operator as users run it (`kapsa operator`) with the builder image assembled from this
machine's buildah and git. The repository's Dockerfile has the shape of most apps': its
dependencies installed in a step of their own before the code is copied in. Here that step is
`sleep 10`, standing for an `npm ci` or `pip install` that cannot reach a package index on this
machine. Each repeat is a new Project (an empty layer cache):

(a) seconds from `kubectl apply` to the Project's first image (clone, pull the base, every
    step, push the image and every step's layer to the cache repository), and the build Job's
    own duration;
(b) seconds from a one-line change to app.txt committed (poll triggered through
    `kapsa reconcile`) to the new image, and the Job's duration: the dependency step comes from
    the cache (`Using cache` in the build's log).

Goal: the rebuild takes at most half the first build.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from datetime import datetime

import yaml

from bench._harness import Report, command_line, load, machine, project_doc, spread, stack
from kapsa.k8s.client import Kube
from kapsa.k8s.resources import JOB, PROJECT
from kapsa.sandbox.stack import KAPSA, OperatorProcess, push_build_images, sample_files

DEPENDENCY_SECONDS = 10


def _dockerfile(base: str) -> str:
    return "\n".join(
        [
            f"FROM {base}",
            "WORKDIR /workspace",
            "COPY deps.txt ./",
            f"RUN sleep {DEPENDENCY_SECONDS} && cp deps.txt installed.txt",
            "COPY . ./",
            "USER 1000",
            "CMD sh serve.sh",
            "",
        ]
    )


def _image(kube: Kube, name: str) -> str | None:
    status = (kube.get(PROJECT, name) or {}).get("status") or {}
    return status.get("latestImage")


def _wait_image(kube: Kube, name: str, *, other_than: str | None, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        image = _image(kube, name)
        if image and image != other_than:
            return image
        time.sleep(0.2)
    raise RuntimeError(f"no new image of {name} within {timeout:g}s")


def _job_seconds(kube: Kube, name: str, commit: str) -> float:
    jobs = kube.list(JOB, namespace=name).get("items", [])
    [job] = [j for j in jobs if j["metadata"]["annotations"]["kapsa.io/commit"] == commit]
    status = job["status"]
    started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return (ended - started).total_seconds()


def _build_log(kubeconfig: str, name: str, commit: str) -> str:
    return subprocess.run(
        [KAPSA, "logs", name, commit, "--build", "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    report = Report()
    report(f"command: {command_line()}")
    report(machine())
    report(f"at start: {load()}")
    firsts: list[float] = []
    rebuilds: list[float] = []
    first_jobs: list[float] = []
    rebuild_jobs: list[float] = []
    cached: list[bool] = []
    with stack("builds", node=True) as s:
        assert s.plane.node is not None and s.kube is not None and s.platform is not None
        assert s.git.port is not None
        s.plane.node.expose(s.git.port)
        images = push_build_images(s.registry)
        kubeconfig = str(s.plane.kubeconfig)
        operator = OperatorProcess(
            kubeconfig=s.plane.kubeconfig,
            ledger_url=f"sqlite:///{s.workdir / 'ledger.db'}",
            workdir=s.workdir / "operator",
            extra=[
                "--no-leader-elect",
                "--builder-image",
                images.builder,
                "--build-host-network",
            ],
        ).start()
        try:
            s.wait_platform()
            for index in range(args.repeats):
                name = f"built-{index}"
                files = {**sample_files(), "deps.txt": "left-pad==1.3.0\n", "app.txt": "v1\n"}
                files["Dockerfile"] = _dockerfile(images.base)
                commit = s.git.create_repo(name, files=files)
                doc = project_doc(name, url=s.git.url_for(name), platform=s.platform)
                doc["spec"]["environments"] = [{"name": "dev", "branch": "main"}]
                started = time.perf_counter()
                s.plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
                first = _wait_image(s.kube, name, other_than=None)
                firsts.append(time.perf_counter() - started)
                first_jobs.append(_job_seconds(s.kube, name, commit))

                newer = s.git.commit(name, branch="main", files={"app.txt": "v2\n"})
                started = time.perf_counter()
                subprocess.run(
                    [KAPSA, "reconcile", name, "--no-wait", "--kubeconfig", kubeconfig],
                    capture_output=True,
                    check=True,
                )
                _wait_image(s.kube, name, other_than=first)
                rebuilds.append(time.perf_counter() - started)
                rebuild_jobs.append(_job_seconds(s.kube, name, newer))
                log = _build_log(kubeconfig, name, newer)
                cached.append("Using cache" in log.split("RUN sleep", 1)[1].split("STEP", 1)[0])
                report(
                    f"  repeat {index + 1}: first {firsts[-1]:.1f} s (job {first_jobs[-1]:.0f} s),"
                    f" rebuild {rebuilds[-1]:.1f} s (job {rebuild_jobs[-1]:.0f} s), dependency "
                    f"step {'from the cache' if cached[-1] else 'run again'}"
                )
        finally:
            operator.stop()
    ratio = sorted(rebuilds)[len(rebuilds) // 2] / sorted(firsts)[len(firsts) // 2]
    report(f"(a) first build, apply to image: {spread(firsts)}; Job: {spread(first_jobs)}")
    report(f"(b) rebuild after a one-line change: {spread(rebuilds)}; Job: {spread(rebuild_jobs)}")
    report(
        f"    rebuild / first (medians): {ratio:.2f} (goal <= 0.5: "
        f"{'met' if ratio <= 0.5 else 'NOT met'}); dependency step cached in "
        f"{sum(cached)} of {len(cached)} rebuilds"
    )
    report(f"at end: {load()}")
    if not args.no_docs:
        report.write_section(
            "builds",
            "Dockerfile builds on the real node (bench/builds.py)",
            intro=(
                f"buildah in a Job pod; the Dockerfile's dependency step is `sleep "
                f"{DEPENDENCY_SECONDS}` (no package index here), before the code is copied in."
            ),
        )


if __name__ == "__main__":
    main()
