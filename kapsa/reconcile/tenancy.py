"""Which Secrets and Environments a Project may reach: the tenancy model of docs/platform-admin.md.

A Project is cluster-scoped and its team writes its spec, so every reference in it is a claim the
operator checks before acting on it with its own, wider, rights:

- A Secret a Project names (`source.git.secretRef`, `source.webhookSecretRef`) is usable when it
  lives in the Project's own namespace, or when its owner shared it with that Project by name
  (the `kapsa.io/shared-with-projects` annotation). A namespace alone never grants anything.
- A shared git Secret is bound to the host it was given for (`kapsa.io/git-host`): pointed at
  another host it is refused, so a borrowed token is never sent to a server its owner did not
  choose. Git credentials are checked for the keys git needs and copied key by key, never whole.
- An Environment is reconciled only inside its Project's namespace and only while that Project
  (by uid) owns it; anything else is refused with a condition and never touches the Project's
  hosts, images or history.
- An image repository belongs to the first Project that named it (oldest first, then by name),
  with everything under it (`<repository>/...`, where its build cache lives): a Project naming
  a repository of another's, in the same Registry, is refused and builds nothing.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from kapsa.api.project import namespace_of
from kapsa.errors import HostKeyUnknownError, InvalidSpecError, UnsafeURLError
from kapsa.git.credentials import (
    KNOWN_HOSTS_KEY,
    PASSWORD_KEY,
    SSH_KEY_KEY,
    USERNAME_KEY,
    GitCredentials,
    credentials_from_secret_data,
)
from kapsa.git.urls import is_ssh, url_host
from kapsa.k8s.client import JSON, ApiError
from kapsa.k8s.resources import ENVIRONMENT
from kapsa.reconcile.conditions import set_condition
from kapsa.reconcile.context import Context, rfc3339

#: On a Secret: the Projects (comma-separated names) its owner lets use it.
ANNOTATION_SHARED_WITH = "kapsa.io/shared-with-projects"
#: On a git credentials Secret: the only host it may be sent to. Required when shared.
ANNOTATION_GIT_HOST = "kapsa.io/git-host"
#: The keys a git credentials copy may carry; nothing else of the source Secret leaves it.
GIT_KEYS = (USERNAME_KEY, PASSWORD_KEY, SSH_KEY_KEY, KNOWN_HOSTS_KEY)


class SecretRefusedError(InvalidSpecError):
    """A Project names a Secret it may not use; `reason` is the condition's reason."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def project_namespace(project: JSON) -> str:
    """The namespace Kapsa makes for a Project: its name (kapsa.api.project.namespace_of)."""
    return namespace_of(str(project["metadata"]["name"]))


def _shared_with(secret: JSON) -> set[str]:
    raw = (secret["metadata"].get("annotations") or {}).get(ANNOTATION_SHARED_WITH, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def usable_secret(ctx: Context, project: JSON, ref: JSON, *, purpose: str) -> JSON | None:
    """The Secret `ref` names, if `project` may use it; None when it does not exist (yet).

    Raises SecretRefusedError when it exists but belongs to someone who did not share it.
    """
    name = project["metadata"]["name"]
    namespace = ref.get("namespace") or ctx.settings.namespace
    secret = ctx.secret(ref["name"], namespace)
    if secret is None:
        return None
    if namespace != project_namespace(project) and name not in _shared_with(secret):
        raise SecretRefusedError(
            f"{purpose} Secret {namespace}/{ref['name']} is outside namespace "
            f"{project_namespace(project)} and not shared with Project {name} (its owner "
            f"adds the annotation {ANNOTATION_SHARED_WITH}: {name})",
            reason="SecretNotShared",
        )
    return secret


def _decoded(secret: JSON) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def git_secret(ctx: Context, project: JSON) -> JSON | None:
    """The Project's git credentials Secret, checked: usable, bound to the URL's host, and
    holding the keys git needs. None when the Project names none or it does not exist yet."""
    git = project["spec"]["source"]["git"]
    ref = git.get("secretRef")
    if not ref:
        return None
    secret = usable_secret(ctx, project, ref, purpose="git credentials")
    if secret is None:
        return None
    namespace = ref.get("namespace") or ctx.settings.namespace
    bound = (secret["metadata"].get("annotations") or {}).get(ANNOTATION_GIT_HOST, "").strip()
    shared = namespace != project_namespace(project)
    if shared and not bound:
        raise SecretRefusedError(
            f"git credentials Secret {namespace}/{ref['name']} is shared but names no host; "
            f"its owner binds it with the annotation {ANNOTATION_GIT_HOST}",
            reason="SecretHostMismatch",
        )
    if bound:
        try:
            host = url_host(git["url"])
        except UnsafeURLError:
            host = ""
        if host.lower() != bound.lower():
            raise SecretRefusedError(
                f"git credentials Secret {namespace}/{ref['name']} is for host {bound}, "
                f"not {host or 'this URL'}",
                reason="SecretHostMismatch",
            )
    try:
        credentials_from_secret_data(_decoded(secret))
    except InvalidSpecError as error:
        raise SecretRefusedError(
            f"git credentials Secret {namespace}/{ref['name']}: {error}", reason="InvalidSecret"
        ) from error
    return secret


def git_credentials(ctx: Context, project: JSON) -> GitCredentials | None:
    """What git authenticates with for this Project, after every check of git_secret, with the
    ssh host keys it may trust: its Secret's `known_hosts` and the platform's. An ssh
    repository with neither raises HostKeyUnknownError before anything connects."""
    git = project["spec"]["source"]["git"]
    ref = git.get("secretRef")
    credentials = None
    if ref:
        secret = git_secret(ctx, project)
        if secret is None:
            namespace = ref.get("namespace") or ctx.settings.namespace
            raise InvalidSpecError(f"git credentials Secret {namespace}/{ref['name']} not found")
        credentials = credentials_from_secret_data(_decoded(secret))
    if not is_ssh(git["url"]):
        return credentials
    pinned = "\n".join(
        text.strip()
        for text in ((credentials.known_hosts if credentials else None), _platform_known_hosts(ctx))
        if text and text.strip()
    )
    if not pinned:
        raise HostKeyUnknownError(
            "an ssh repository needs its host keys pinned: add `known_hosts` to the git "
            "credentials Secret (ssh-keyscan HOST), or ask the platform admin to list the host "
            "in the operator's --ssh-known-hosts"
        )
    return dataclasses.replace(credentials or GitCredentials(), known_hosts=pinned)


def _platform_known_hosts(ctx: Context) -> str | None:
    path = ctx.settings.ssh_known_hosts
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise HostKeyUnknownError(
            f"the operator's --ssh-known-hosts cannot be read: {error}"
        ) from error


def git_copy_data(secret: JSON) -> tuple[dict[str, str], str]:
    """(data, type) of the copy builds read: only the git keys, typed as kpack expects."""
    data = {k: v for k, v in (secret.get("data") or {}).items() if k in GIT_KEYS}
    kind = "kubernetes.io/basic-auth" if PASSWORD_KEY in data else "kubernetes.io/ssh-auth"
    if kind == "kubernetes.io/ssh-auth":
        data.pop(USERNAME_KEY, None)
    return data, kind


def webhook_token(ctx: Context, project: JSON) -> bytes | None:
    """The Project's webhook token, when its Secret is one the Project may use."""
    ref = (project.get("spec") or {}).get("source", {}).get("webhookSecretRef")
    if not ref:
        return None
    try:
        secret = usable_secret(ctx, project, ref, purpose="webhook")
    except SecretRefusedError:
        return None
    token = ((secret or {}).get("data") or {}).get("token")
    return base64.b64decode(token).strip() if token else None


def environment_refusal(env: JSON, project: JSON | None) -> tuple[str, str] | None:
    """(reason, message) when `env` may not act as `project`'s, None when it may.

    It must live in the Project's namespace and be owned by that Project's uid: a `spec.project`
    naming someone else's Project, or an owner changed after the fact, claims nothing.
    """
    meta = env["metadata"]
    claimed = env["spec"].get("project", "")
    if project is None:
        return None  # nothing to claim; the caller waits for the Project
    if meta.get("namespace") != project_namespace(project):
        return (
            "ProjectMismatch",
            f"Project {claimed} runs in namespace {project_namespace(project)}; an Environment "
            f"in {meta.get('namespace')} cannot belong to it",
        )
    owners: list[dict[str, Any]] = meta.get("ownerReferences") or []
    if not any(
        o.get("kind") == "Project" and o.get("uid") == project["metadata"]["uid"] for o in owners
    ):
        return (
            "ProjectMismatch",
            f"this Environment is not owned by Project {claimed} (uid "
            f"{project['metadata']['uid']}); Kapsa makes and owns Environments itself",
        )
    return None


def refuse_environment(
    ctx: Context, env: JSON, *, reason: str, message: str, finalizer: str
) -> None:
    """Say on the Environment why it is not reconciled, and nothing else: no ledger row, no
    children, no host. Being deleted, it loses Kapsa's finalizer so it does not hang."""
    meta = env["metadata"]
    if meta.get("deletionTimestamp"):
        if finalizer in (meta.get("finalizers") or []):
            kept = [f for f in meta["finalizers"] if f != finalizer]
            try:
                ctx.kube.merge_patch(
                    ENVIRONMENT,
                    meta["name"],
                    {"metadata": {"finalizers": kept}},
                    namespace=meta["namespace"],
                )
            except ApiError as error:
                if error.status != 404:
                    raise
        return
    old = env.get("status") or {}
    conditions = set_condition(
        list(old.get("conditions", [])),
        type_="Ready",
        status=False,
        reason=reason,
        message=message,
        generation=meta.get("generation"),
        now=rfc3339(ctx.now()),
    )
    status = {**old, "phase": old.get("phase", "Pending"), "conditions": conditions}
    if _same_condition(old, reason=reason, message=message):
        return
    ctx.kube.replace_status(
        ENVIRONMENT,
        {
            "apiVersion": env["apiVersion"],
            "kind": env["kind"],
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": env["spec"],
            "status": status,
        },
    )


def _same_condition(status: JSON, *, reason: str, message: str) -> bool:
    return any(
        c.get("type") == "Ready"
        and c.get("status") == "False"
        and c.get("reason") == reason
        and c.get("message") == message
        for c in status.get("conditions", [])
    )


def repositories_overlap(one: str, other: str) -> bool:
    """Whether one repository is the other or lies below it: then they are one Project's."""
    return one == other or one.startswith(other + "/") or other.startswith(one + "/")


def repository_owner(project: JSON, projects: list[JSON]) -> str | None:
    """The Project that owns the repository `project` names, when it is another one."""
    build = project["spec"]["build"]
    mine = (project["metadata"].get("creationTimestamp") or "", project["metadata"]["name"])
    for other in projects:
        theirs = (other["metadata"].get("creationTimestamp") or "", other["metadata"]["name"])
        if theirs >= mine or other["metadata"].get("deletionTimestamp"):
            continue
        if other["spec"]["build"]["registryRef"]["name"] != build["registryRef"]["name"]:
            continue
        if repositories_overlap(other["spec"]["build"]["repository"], build["repository"]):
            return str(other["metadata"]["name"])
    return None
