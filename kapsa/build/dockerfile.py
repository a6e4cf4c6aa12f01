"""Dockerfile builds: a Kubernetes Job running buildah, since kpack builds buildpacks only.

The Job's one container clones the commit itself, runs `buildah bud` with chroot isolation on vfs
storage (no daemon, no privileged mode, no overlay mounts) and pushes with the Registry's
credentials mounted as a file (`--authfile`, the docker config format). buildah writes the digest
of the manifest it pushed (`--digestfile`) to the container's termination message, and Kapsa
reads it from the Job's pod: the image an environment runs is the one this build pushed,
whatever the per-commit tag names by the time anyone looks.

Every step's layer is pushed to a cache repository under the Project's own (`--cache-to`) and
looked up there by the next build (`--cache-from`): a pod starts with empty storage, so this is
how a one-line change rebuilds only the steps after it.

A failing build writes the step it failed at and the last lines of its log as the termination
message instead, which becomes the Project's BuildSucceeded message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from kapsa.build.base import BuildRequest, BuildResult
from kapsa.machines import BuildState

#: Where the Job mounts what it is given, as SCRIPT reads them (it reads nothing else).
GIT_CREDENTIALS = "/kapsa/git"
REGISTRY_AUTH = "/kapsa/registry"
TERMINATION_LOG = "/dev/termination-log"
#: The repository below a Project's own where buildah keeps the layers of its steps: a new
#: pod starts with empty storage, so a step is reused only when its layer is in the registry.
CACHE = "buildcache"
#: A build that runs longer is stopped and fails (DeadlineExceeded).
DEADLINE_SECONDS = 30 * 60
#: Lines of the log a failed build's message carries.
LOG_LINES = 12
#: What buildah's chroot isolation needs to run a `RUN` step as root of the image: it creates a
#: user namespace mapping root to root (writing uid_map/gid_map, which for uid 0 takes SETFCAP
#: since Linux 5.12, and SETUID/SETGID), and writes files as their owners in the image
#: (CHOWN, DAC_OVERRIDE, FOWNER). Everything else is dropped. docs/platform-admin.md says why.
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "SETFCAP")

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

#: The build, as `sh -c` runs it in the builder image. Inputs arrive as environment variables,
#: never spliced into the text, so no commit message, path or URL can change what runs.
SCRIPT = r"""set -eu
set -o pipefail
log=/tmp/build.log
fail() {
    { grep '^STEP ' "$log" | tail -n 1 || true; tail -n "$KAPSA_LOG_LINES" "$log"; } \
        > /dev/termination-log
    exit 1
}
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1
if [ -f /kapsa/git/password ]; then
    printf '%s\n' '#!/bin/sh' 'case "$1" in Username*) cat /kapsa/git/username ;;' \
        '*) cat /kapsa/git/password ;; esac' > /tmp/askpass
    chmod 700 /tmp/askpass
    export GIT_ASKPASS=/tmp/askpass
fi
if [ -f /kapsa/git/ssh-privatekey ]; then
    export GIT_SSH_COMMAND="ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes \
-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/kapsa/git/known_hosts \
-i /kapsa/git/ssh-privatekey"
fi
git='git -c protocol.ext.allow=never -c protocol.fd.allow=never -c http.followRedirects=false'
echo "STEP 0: clone $KAPSA_COMMIT" > "$log"
{
    $git init -q /workspace && cd /workspace &&
    { $git fetch -q --depth=1 -- "$KAPSA_GIT_URL" "$KAPSA_COMMIT" ||
      $git fetch -q --depth=1 -- "$KAPSA_GIT_URL" "refs/heads/$KAPSA_BRANCH"; } &&
    $git -c advice.detachedHead=false checkout -q "$KAPSA_COMMIT"
} >> "$log" 2>&1 || fail
cd /workspace
buildah bud --isolation=chroot --storage-driver=vfs --authfile=/kapsa/registry/config.json \
    --tls-verify="$KAPSA_TLS_VERIFY" ${KAPSA_CERT_DIR:+--cert-dir="$KAPSA_CERT_DIR"} \
    --layers --cache-from="$KAPSA_CACHE" \
    --cache-to="$KAPSA_CACHE" -f "$KAPSA_DOCKERFILE" -t "$KAPSA_IMAGE" \
    -- "$KAPSA_CONTEXT" 2>&1 | tee -a "$log" || fail
echo "STEP push: $KAPSA_IMAGE" >> "$log"
buildah push --storage-driver=vfs --authfile=/kapsa/registry/config.json \
    --tls-verify="$KAPSA_TLS_VERIFY" ${KAPSA_CERT_DIR:+--cert-dir="$KAPSA_CERT_DIR"} \
    --digestfile=/dev/termination-log \
    -- "$KAPSA_IMAGE" "docker://$KAPSA_IMAGE" 2>&1 | tee -a "$log" || fail
"""


@dataclass(frozen=True, kw_only=True)
class BuildahSettings:
    """How the platform runs Dockerfile builds (flags of `kapsa operator`)."""

    image: str
    """The builder image: sh, git and buildah (docs/platform-admin.md)."""
    host_network: bool = False
    """Build pods share the node's network: test grounds whose git host and registry listen on
    the node's loopback only."""
    privileged: bool = False
    """Run the build container privileged, for clusters whose seccomp profile or kernel refuses
    the user namespace chroot isolation needs."""


class DockerfileBuilder:
    kind = "dockerfile"

    def __init__(self, settings: BuildahSettings) -> None:
        self.settings = settings

    @staticmethod
    def object_name(request: BuildRequest) -> str:
        suffix = request.commit[:7]
        if request.trigger:
            suffix += "-" + hashlib.sha256(request.trigger.encode()).hexdigest()[:4]
        return (
            f"{request.project}-{request.branch_slug}"[: 62 - len(suffix)].rstrip("-")
            + f"-{suffix}"
        )

    def manifest(self, request: BuildRequest) -> dict[str, Any]:
        env = {
            "KAPSA_GIT_URL": request.git_url,
            "KAPSA_COMMIT": request.commit,
            "KAPSA_BRANCH": request.branch,
            "KAPSA_DOCKERFILE": request.dockerfile,
            "KAPSA_CONTEXT": request.context,
            "KAPSA_IMAGE": request.tag,
            "KAPSA_CACHE": cache_repository(request),
            "KAPSA_TLS_VERIFY": "false" if request.insecure_registry else "true",
            "KAPSA_LOG_LINES": str(LOG_LINES),
        }
        if request.registry_ca_key:
            # buildah trusts the *.crt files of --cert-dir for the registry it talks to.
            env["KAPSA_CERT_DIR"] = f"{REGISTRY_AUTH}/certs"
        volumes: list[dict[str, Any]] = [
            {
                "name": "registry",
                "secret": {
                    "secretName": request.registry_secret,
                    "items": [
                        {"key": ".dockerconfigjson", "path": "config.json"},
                        *(
                            [{"key": request.registry_ca_key, "path": "certs/ca.crt"}]
                            if request.registry_ca_key
                            else []
                        ),
                    ],
                    "defaultMode": 0o400,
                },
            }
        ]
        mounts = [{"name": "registry", "mountPath": REGISTRY_AUTH, "readOnly": True}]
        if request.git_secret is not None:
            volumes.append(
                {"name": "git", "secret": {"secretName": request.git_secret, "defaultMode": 0o400}}
            )
            mounts.append({"name": "git", "mountPath": GIT_CREDENTIALS, "readOnly": True})
        security: dict[str, Any] = (
            {"privileged": True}
            if self.settings.privileged
            else {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)},
            }
        )
        pod: dict[str, Any] = {
            "restartPolicy": "Never",
            "serviceAccountName": request.service_account,
            # The build talks to git and the registry only; it has no use for the API.
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "build",
                    "image": self.settings.image,
                    "command": ["/bin/sh", "-c", SCRIPT],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "volumeMounts": mounts,
                    "securityContext": security,
                    "terminationMessagePath": TERMINATION_LOG,
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"memory": "2Gi"},
                    },
                }
            ],
            "volumes": volumes,
        }
        if self.settings.host_network:
            pod["hostNetwork"] = True
            pod["dnsPolicy"] = "ClusterFirstWithHostNet"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.object_name(request),
                "namespace": request.namespace,
                "labels": request.labels,
                "annotations": {
                    "kapsa.io/commit": request.commit,
                    "kapsa.io/tag": request.tag,
                    "kapsa.io/repository": request.repository_ref,
                },
                "ownerReferences": [request.owner],
            },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": DEADLINE_SECONDS,
                "ttlSecondsAfterFinished": 86400,
                "template": {"metadata": {"labels": request.labels}, "spec": pod},
            },
        }

    def result(self, job: dict[str, Any] | None, pod: dict[str, Any] | None) -> BuildResult:
        """The build's outcome from its Job and the Job's pod (None while there is none)."""
        if job is None:
            return BuildResult(state=BuildState.NONE)
        annotations = job["metadata"].get("annotations", {})
        commit = annotations.get("kapsa.io/commit")
        repository = annotations.get("kapsa.io/repository", "")
        for condition in (job.get("status") or {}).get("conditions", []):
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                digest = termination_message(pod).strip()
                if not _DIGEST_RE.fullmatch(digest):
                    return BuildResult(
                        state=BuildState.FAILED,
                        commit=commit,
                        message="the build finished without reporting the digest it pushed",
                    )
                return BuildResult(
                    state=BuildState.SUCCEEDED, commit=commit, image=f"{repository}@{digest}"
                )
            if condition.get("type") == "Failed":
                return BuildResult(
                    state=BuildState.FAILED,
                    commit=commit,
                    message=failure_message(condition, pod),
                )
        return BuildResult(state=BuildState.RUNNING, commit=commit)


def cache_repository(request: BuildRequest) -> str:
    """Where a Project's builds keep their layers for the next build: under its repository,
    which it owns with everything below it (kapsa.reconcile.tenancy.repository_owner)."""
    return f"{request.repository_ref}/{CACHE}"


def termination_message(pod: dict[str, Any] | None) -> str:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses", []):
        terminated = (status.get("state") or {}).get("terminated") or {}
        if status.get("name") == "build" and terminated:
            return str(terminated.get("message") or "")
    return ""


def failure_message(condition: dict[str, Any], pod: dict[str, Any] | None) -> str:
    """`<step> failed: <last lines>` from what the script left; the Job's words otherwise
    (a deadline passed, the pod was deleted, the builder image could not be pulled)."""
    lines = [line for line in termination_message(pod).splitlines() if line.strip()]
    if not lines:
        why = condition.get("message") or condition.get("reason") or "the build Job failed"
        return f"the build did not finish: {why}"
    step, *tail = lines
    if not step.startswith("STEP "):
        return "the build failed: " + " | ".join(lines[-LOG_LINES:])
    if step in tail:  # the step's own output only, not the layers committed before it
        tail = tail[len(tail) - tail[::-1].index(step) :]
    number, _, instruction = step.removeprefix("STEP ").partition(": ")
    return f"build step {number} ({instruction}) failed: " + " | ".join(tail[-LOG_LINES:])
