"""`kapsa logs PROJECT --build [COMMIT]`: the whole log of a Dockerfile build.

A failed build's message carries its failing step and last lines (the Project's BuildSucceeded
condition); the whole log lives in the build Job's pod for as long as the Job is kept (a day
after it finishes, `ttlSecondsAfterFinished`). This finds that pod by the Job's uid, as the Job
controller labels it, and prints what the API server serves as its log.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kapsa.cli import app
from kapsa.cli.cluster import KUBECONFIG_HELP, fail, kube
from kapsa.errors import KapsaError
from kapsa.k8s.client import ApiError, Kube
from kapsa.k8s.manifests import LABEL_PROJECT
from kapsa.k8s.resources import JOB, POD, PROJECT

JSON = dict[str, Any]
COMMAND = "kapsa logs"


def build_job(client: Kube, project: str, commit: str | None) -> JSON:
    """The newest build Job of `project`, of the commit starting with `commit` when given."""
    if client.get(PROJECT, project) is None:
        raise KapsaError(f"there is no Project {project}")
    jobs = client.list(JOB, namespace=project, label_selector=f"{LABEL_PROJECT}={project}")
    found = [
        job
        for job in jobs.get("items", [])
        if commit is None
        or job["metadata"].get("annotations", {}).get("kapsa.io/commit", "").startswith(commit)
    ]
    if not found:
        at = f" of commit {commit}" if commit else ""
        raise KapsaError(
            f"no Dockerfile build{at} of {project} is kept: build Jobs are removed a day after "
            f"they finish (a failed build's last lines stay in `kubectl get project {project}` "
            "and `kapsa history`); buildpacks builds run in kpack, not in a Job"
        )
    return max(found, key=lambda job: str(job["metadata"].get("creationTimestamp", "")))


def build_log(client: Kube, job: JSON) -> str:
    meta = job["metadata"]
    pods = client.list(
        POD, namespace=meta["namespace"], label_selector=f"controller-uid={meta['uid']}"
    ).get("items", [])
    if not pods:
        raise KapsaError(
            f"the pod of build {meta['name']} is gone (deleted, or not started yet); its last "
            "lines, if it failed, are in the Project's BuildSucceeded condition"
        )
    pod = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))
    path = POD.path(namespace=meta["namespace"], name=pod["metadata"]["name"]) + "/log"
    try:
        return client.text(path, query={"container": "build"})
    except ApiError as error:
        raise KapsaError(f"the log of {pod['metadata']['name']}: {error}") from error


@app.command()
def logs(
    project: Annotated[str, typer.Argument(help="The Project's name.")],
    commit: Annotated[
        str | None, typer.Argument(help="The commit (or its first characters); the newest build.")
    ] = None,
    build: Annotated[bool, typer.Option("--build", help="Show a build's log.")] = False,
    kubeconfig: Annotated[str | None, typer.Option(help=KUBECONFIG_HELP)] = None,
) -> None:
    """The log of PROJECT's newest Dockerfile build, or of COMMIT's."""
    if not build:
        fail(
            COMMAND,
            "give --build for a build's log; an app's log is `kubectl -n PROJECT logs "
            "deployment/ENVIRONMENT`",
        )
    client = kube(kubeconfig, command=COMMAND)
    try:
        job = build_job(client, project, commit)
        text = build_log(client, job)
    except KapsaError as exc:
        fail(COMMAND, str(exc))
    typer.echo(
        f"# build {job['metadata']['name']} of {job['metadata']['annotations']['kapsa.io/commit']}",
        err=True,
    )
    typer.echo(text, nl=not text.endswith("\n"))
