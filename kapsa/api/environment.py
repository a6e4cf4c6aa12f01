"""Environment: one running copy of a Project's app (namespaced, in the Project's namespace)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import Field

from kapsa.api.common import (
    AGE_COLUMN,
    BRANCH_MAX,
    DNS_LABEL_PATTERN,
    DURATION_MAX,
    DURATION_PATTERN,
    NAMESPACE_MAX,
    READY_MESSAGE,
    READY_STATUS,
    Condition,
    LastTransition,
    Model,
    Phase,
    PrinterColumn,
    Resource,
    condition_list_field,
)
from kapsa.api.project import MAX_SECRET_REFS, SecretRef

#: A full commit id or an abbreviation of at least 7 hex digits, as `git log --oneline` shows it.
COMMIT_PATTERN = r"^[0-9a-f]{7,64}$"


class EnvironmentType(StrEnum):
    STANDARD = "standard"
    PREVIEW = "preview"


class ReleaseRequest(Model):
    """A release a person asks for: a rollback here, or a promotion from another environment.

    It lives in spec so that `kubectl patch` is enough; Kapsa's own server-side apply never
    sets it, so it never takes it away. Kapsa acts on a request once: the same request again
    (same fields) is already answered in status.release, so a new `requestedAt` asks anew.
    """

    rollback_to: str | None = Field(
        default=None,
        max_length=64,
        pattern=COMMIT_PATTERN,
        description="Return to this commit (full or at least 7 hex digits). Only a commit the "
        "ledger shows Running and ready in this environment, whose image the registry still "
        "has; the commit rolled back from is quarantined here.",
    )
    promote_from: str | None = Field(
        default=None,
        max_length=NAMESPACE_MAX,
        pattern=DNS_LABEL_PATTERN,
        description="Run the image that this other environment of the Project runs (no "
        "rebuild). Only into an environment with autoSync false.",
    )
    min_ready: str | None = Field(
        default=None,
        max_length=DURATION_MAX,
        pattern=DURATION_PATTERN,
        description="Promotion: how long the ledger must show the image Running and ready in "
        "promoteFrom (default 10m).",
    )
    requested_at: str | None = Field(
        default=None,
        max_length=64,
        description="When it was asked (any text, `kapsa rollback` and `kapsa promote` write "
        "the time); a new value asks again with otherwise identical fields.",
    )


class QuarantinedCommit(Model):
    commit: str = Field(description="A commit auto-sync no longer rolls out here.")
    reason: str = Field(default="", description="rollback or auto-rollback.")
    at: str | None = Field(default=None, description="When it was quarantined (RFC 3339).")


class ReleaseStatus(Model):
    """Kapsa's answer to spec.release: what it did, or why it would not."""

    request: ReleaseRequest = Field(description="The request this answers.")
    outcome: str = Field(description="Accepted, Refused, or Waiting (for a rollout in progress).")
    message: str = Field(default="", description="Why, for people.")
    source: str | None = Field(
        default=None, description="rollback or promote:<environment>, as the ledger names it."
    )
    commit: str | None = Field(default=None, description="The commit released.")
    image: str | None = Field(default=None, description="The image released, by digest.")
    at: str | None = Field(default=None, description="When Kapsa answered (RFC 3339).")


class EnvironmentSpec(Model):
    project: str = Field(
        min_length=1,
        max_length=NAMESPACE_MAX,
        description="The Project this environment belongs to.",
    )
    type: EnvironmentType = Field(
        default=EnvironmentType.STANDARD, description="standard, or preview for a branch."
    )
    branch: str = Field(min_length=1, max_length=BRANCH_MAX, description="The branch it runs.")
    auto_sync: bool = Field(default=True, description="Roll out new commits by itself.")
    secret_refs: list[SecretRef] = Field(
        default_factory=list,
        max_length=MAX_SECRET_REFS,
        description="Secrets exposed to the app with envFrom.",
    )
    auto_rollback: bool | None = Field(
        default=None,
        description="Return to the last good image when a rollout misses its deadline; unset "
        "means the Project's environment entry decides (default false).",
    )
    release: ReleaseRequest | None = Field(
        default=None,
        description="A rollback or promotion asked for by a person (`kapsa rollback`, `kapsa "
        "promote`, or kubectl); answered in status.release.",
    )


class EnvironmentStatus(Model):
    phase: Phase = Field(default=Phase.PENDING, description="Where the environment stands.")
    message: str | None = Field(default=None, description="Why, for people.")
    url: str | None = Field(default=None, description="https://<host>.")
    host: str | None = Field(default=None, description="The host allocated from the DomainPool.")
    image: str | None = Field(default=None, description="The image the Deployment runs.")
    commit: str | None = Field(default=None, description="The commit of that image.")
    short_commit: str | None = Field(
        default=None, description="commit's first 12 characters, for `kubectl get`."
    )
    target_image: str | None = Field(
        default=None, description="The image a rollout in progress moves to."
    )
    target_commit: str | None = Field(default=None, description="The commit of targetImage.")
    rollout_started_at: str | None = Field(
        default=None, description="When the rollout in progress began."
    )
    target_source: str | None = Field(
        default=None,
        description="What started the rollout in progress when not a new commit: rollback, "
        "auto-rollback or promote:<environment>.",
    )
    expires_at: str | None = Field(default=None, description="Previews: when it is removed.")
    quarantined_commits: list[QuarantinedCommit] = Field(
        default_factory=list,
        description="Commits rolled back from here: auto-sync skips them and moves on with the "
        "next newer commit.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["commit"],
        },
    )
    release: ReleaseStatus | None = Field(
        default=None, description="The answer to the latest spec.release."
    )
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
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(name="Type", type="string", json_path=".spec.type", description="Its type."),
        PrinterColumn(
            name="Branch", type="string", json_path=".spec.branch", description="What it runs."
        ),
        PrinterColumn(
            name="Phase", type="string", json_path=".status.phase", description="Where it stands."
        ),
        PrinterColumn(name="Ready", type="string", json_path=READY_STATUS, description="Ready."),
        PrinterColumn(
            name="Commit",
            type="string",
            json_path=".status.shortCommit",
            description="The commit it runs, shortened.",
        ),
        PrinterColumn(name="URL", type="string", json_path=".status.url", description="Its URL."),
        PrinterColumn(
            name="Expires",
            type="string",
            json_path=".status.expiresAt",
            description="Previews: when it is removed.",
        ),
        AGE_COLUMN,
        PrinterColumn(
            name="Message",
            type="string",
            json_path=READY_MESSAGE,
            description="Why (not) Ready.",
            priority=1,
        ),
        PrinterColumn(
            name="Image",
            type="string",
            json_path=".status.image",
            description="What the Deployment runs, by digest.",
            priority=1,
        ),
    )
    kind: str = "Environment"
