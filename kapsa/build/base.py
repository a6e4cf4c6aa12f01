"""What every builder takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kapsa.machines import BuildState


@dataclass(frozen=True)
class BuildRequest:
    """One commit of one branch to build, and everything the build object needs."""

    project: str
    namespace: str
    branch: str
    branch_slug: str
    commit: str
    git_url: str
    tag: str
    """The per-commit tag users see: `<server>/<repository>:<short-sha>` (previews prefixed)."""
    repository_ref: str
    """`<server>/<repository>`, where the image is pushed."""
    service_account: str
    owner: dict[str, Any]
    registry_secret: str
    """The Secret (docker config) a Dockerfile build pushes and pulls with."""
    registry_ca_key: str | None = None
    """The key of that Secret holding the registry's private CA, if it has one."""
    preview: bool = False
    trigger: str | None = None
    """A manual rebuild token: changing it asks for the same commit to be built again."""
    builder_kind: str = "ClusterBuilder"
    builder_name: str = "default"
    dockerfile: str = "Dockerfile"
    context: str = "."
    insecure_registry: bool = False
    """The Registry answers plain HTTP (spec.insecure)."""
    git_secret: str | None = None
    """A Secret in the namespace with the repository's credentials, for private repositories."""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildResult:
    state: BuildState
    commit: str | None = None
    image: str | None = None
    """The built image by digest (`<server>/<repository>@sha256:...`), once known."""
    message: str = ""
