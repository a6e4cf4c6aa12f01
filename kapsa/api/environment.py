"""Environment: one running copy of a Project's app (namespaced, in the Project's namespace)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from kapsa.api.common import Condition, LastTransition, Model, Phase, Resource, condition_list_field
from kapsa.api.project import SecretRef


class EnvironmentType(StrEnum):
    STANDARD = "standard"
    PREVIEW = "preview"


class EnvironmentSpec(Model):
    project: str = Field(min_length=1, description="The Project this environment belongs to.")
    type: EnvironmentType = Field(
        default=EnvironmentType.STANDARD, description="standard, or preview for a branch."
    )
    branch: str = Field(min_length=1, description="The branch it runs.")
    auto_sync: bool = Field(default=True, description="Roll out new commits by itself.")
    secret_refs: list[SecretRef] = Field(
        default_factory=list, description="Secrets exposed to the app with envFrom."
    )


class EnvironmentStatus(Model):
    phase: Phase = Field(default=Phase.PENDING, description="Where the environment stands.")
    message: str | None = Field(default=None, description="Why, for people.")
    url: str | None = Field(default=None, description="https://<host>.")
    host: str | None = Field(default=None, description="The host allocated from the DomainPool.")
    image: str | None = Field(default=None, description="The image the Deployment runs.")
    commit: str | None = Field(default=None, description="The commit of that image.")
    target_image: str | None = Field(
        default=None, description="The image a rollout in progress moves to."
    )
    target_commit: str | None = Field(default=None, description="The commit of targetImage.")
    rollout_started_at: str | None = Field(
        default=None, description="When the rollout in progress began."
    )
    expires_at: str | None = Field(default=None, description="Previews: when it is removed.")
    conditions: list[Condition] = condition_list_field()
    observed_generation: int | None = Field(default=None, description="The spec last acted on.")
    last_transition: LastTransition | None = Field(
        default=None, description="The newest transition, as written to the ledger."
    )


class Environment(Resource[EnvironmentSpec, EnvironmentStatus]):
    """One running copy of a Project's app at one branch; made by Kapsa, not by hand."""

    kind_name: ClassVar[str] = "Environment"
    plural: ClassVar[str] = "environments"
    short_names: ClassVar[tuple[str, ...]] = ("kenv",)
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Namespaced"
    printer_columns: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        ("Phase", "string", ".status.phase", "Where the environment stands."),
        ("URL", "string", ".status.url", "Where it answers."),
        ("Image", "string", ".status.image", "What the Deployment runs."),
        ("Age", "date", ".metadata.creationTimestamp", "Since creation."),
    )
    kind: str = "Environment"
