"""Project: a Git repository and the environments it runs in (cluster-scoped)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from kapsa.api.common import (
    AGE_COLUMN,
    BRANCH_MAX,
    DNS_LABEL_PATTERN,
    DURATION_MAX,
    DURATION_PATTERN,
    MAP_BY_NAME,
    NAME_MAX,
    READY_MESSAGE,
    READY_STATUS,
    TEXT_MAX,
    Condition,
    LastTransition,
    Model,
    NameRef,
    NamespacedRef,
    Phase,
    PrinterColumn,
    Resource,
    condition_list_field,
)

MAX_SECRET_REFS = 20
MAX_PATTERNS = 50
BranchPattern = Annotated[str, Field(min_length=1, max_length=BRANCH_MAX)]
#: Set to any new value (`kapsa reconcile` writes the time) to have Kapsa read the Project's
#: branches and reconcile it now; status.lastHandledReconcileAt echoes the value once done.
ANNOTATION_RECONCILE = "kapsa.io/reconcile-requested-at"


def namespace_of(project: str) -> str:
    """The namespace a Project owns: its own name.

    One rule for every layer that scopes by it: the reconciler makes and checks the namespace
    (kapsa.reconcile.tenancy), the ledger counts an Environment's rows for a Project only when
    they were written in it (kapsa.ledger.store), so a row of an Environment elsewhere that
    names the Project is never part of its history.
    """
    return project


class GitSource(Model):
    url: str = Field(
        min_length=1,
        max_length=2048,
        description=(
            "The repository to build from: https:// or ssh (git@host:path). git:// and file:// "
            "only where the operator was started with --allow-insecure-sources."
        ),
    )
    secret_ref: NamespacedRef | None = Field(
        default=None,
        description="A Secret with credentials for the repository (username/password or "
        "ssh-privatekey): in the Project's namespace, or shared with this Project by its owner "
        "(annotations kapsa.io/shared-with-projects and kapsa.io/git-host). Builds get a copy "
        "of its git keys only.",
    )


class SourceSpec(Model):
    git: GitSource = Field(description="Where the code lives.")
    poll_interval: str = Field(
        default="5m",
        max_length=DURATION_MAX,
        pattern=DURATION_PATTERN,
        description="How often Kapsa checks the branches for new commits (e.g. 30s, 5m, 1h). "
        "Shorter than the operator's --min-poll-interval (default 10s) means that floor.",
    )
    webhook_secret_ref: NamespacedRef | None = Field(
        default=None,
        description="A Secret whose `token` key authenticates push webhooks for this Project "
        "(GitHub/Gitea HMAC signature or GitLab token), in the Project's namespace or shared "
        "with it (annotation kapsa.io/shared-with-projects). Without it, webhooks are refused "
        "and polling alone finds new commits.",
    )


class BuildStrategy(StrEnum):
    AUTO = "auto"
    BUILDPACKS = "buildpacks"
    DOCKERFILE = "dockerfile"


class BuilderRef(Model):
    kind: Literal["ClusterBuilder", "Builder"] = Field(
        default="ClusterBuilder", description="The kpack builder kind."
    )
    name: str = Field(
        default="default",
        min_length=1,
        max_length=NAME_MAX,
        description="The kpack builder's name.",
    )


#: One segment of a path inside the repository: anything but `..`, a slash, a backslash or NUL
#: (no look-ahead: the API server's patterns are RE2).
_SEGMENT = r"([^./\\\x00][^/\\\x00]*|\.[^./\\\x00][^/\\\x00]*|\.\.[^/\\\x00]+|\.)"
#: A relative path inside the repository, as `Dockerfile` or `docker/api`; never out of it.
REPO_PATH_PATTERN = rf"^{_SEGMENT}(/{_SEGMENT})*/?$"


class BuildSpec(Model):
    strategy: BuildStrategy = Field(
        default=BuildStrategy.AUTO,
        description="auto: a Dockerfile at the commit means the Dockerfile builder, otherwise "
        "buildpacks (kpack). buildpacks or dockerfile force one.",
    )
    builder: BuilderRef = Field(
        default_factory=BuilderRef, description="The kpack builder used for buildpacks."
    )
    registry_ref: NameRef = Field(description="The Registry images are pushed to.")
    repository: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$",
        description="The image repository in the registry, e.g. myapp/api.",
    )
    dockerfile: str = Field(
        default="Dockerfile",
        min_length=1,
        max_length=TEXT_MAX,
        pattern=REPO_PATH_PATTERN,
        description="Path of the Dockerfile in the repository.",
    )
    context: str = Field(
        default=".",
        min_length=1,
        max_length=TEXT_MAX,
        pattern=REPO_PATH_PATTERN,
        description="The Dockerfile build's context: a folder of the repository, `.` for all "
        "of it.",
    )


class EnvVar(Model):
    name: str = Field(min_length=1, max_length=256, description="Variable name.")
    value: str = Field(
        default="",
        max_length=32768,
        description="A plain value; use secretRefs for secrets.",
    )


#: A Kubernetes quantity as users write them for CPU and memory: 250m, 0.5, 128Mi, 1Gi.
QUANTITY_PATTERN = r"^(0|[1-9][0-9]*)(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"


class ResourceAmounts(Model):
    cpu: str | None = Field(
        default=None,
        max_length=DURATION_MAX,
        pattern=QUANTITY_PATTERN,
        description="CPU, in cores or millicores (250m).",
    )
    memory: str | None = Field(
        default=None,
        max_length=DURATION_MAX,
        pattern=QUANTITY_PATTERN,
        description="Memory, e.g. 128Mi or 1Gi.",
    )


class AppResources(Model):
    requests: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="25m", memory="64Mi"),
        description="What each pod is guaranteed and scheduled by.",
    )
    limits: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(memory="256Mi"),
        description="The most each pod may use: past the memory limit the app is restarted "
        "(OOMKilled). No CPU limit by default, so a busy app is slowed by its neighbours' "
        "requests rather than throttled on an idle node.",
    )


class AppSpec(Model):
    port: int = Field(default=8080, ge=1, le=65535, description="The port the app listens on.")
    replicas: int = Field(default=1, ge=0, le=100, description="Pods per environment.")
    env: list[EnvVar] = Field(
        default_factory=list, max_length=100, description="Plain environment variables."
    )
    health_path: str | None = Field(
        default=None,
        max_length=TEXT_MAX,
        description="HTTP path for readiness and liveness probes; unset, a pod is ready once "
        "it accepts connections on the port.",
    )
    resources: AppResources = Field(
        default_factory=AppResources,
        description="CPU and memory requests and limits of each pod.",
    )
    rollout_deadline: str = Field(
        default="10m",
        max_length=DURATION_MAX,
        pattern=DURATION_PATTERN,
        description="How long a rollout may take to become ready before the environment is "
        "marked Failed (reason RolloutDeadlineExceeded).",
    )


class SecretRef(Model):
    name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        description="A Secret in the Project's namespace, exposed with envFrom.",
    )


class EnvironmentTemplate(Model):
    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=40,
        description="The environment's name; also the first label of its host.",
    )
    branch: str = Field(
        min_length=1, max_length=BRANCH_MAX, description="The branch this environment runs."
    )
    auto_sync: bool = Field(
        default=True, description="Roll out every new commit on the branch by itself."
    )
    secret_refs: list[SecretRef] = Field(
        default_factory=list,
        max_length=MAX_SECRET_REFS,
        description="Secrets exposed to the app as environment variables.",
    )
    auto_rollback: bool = Field(
        default=False,
        description="When a rollout misses app.rolloutDeadline, return to the last image that "
        "ran ready here and quarantine the failed commit (see docs/releases.md).",
    )


class PreviewSpec(Model):
    enabled: bool = Field(default=False, description="Create an environment per matching branch.")
    include: list[BranchPattern] = Field(
        default_factory=lambda: ["*"],
        max_length=MAX_PATTERNS,
        description="Branch glob patterns that get a preview.",
    )
    exclude: list[BranchPattern] = Field(
        default_factory=list,
        max_length=MAX_PATTERNS,
        description="Branch glob patterns that never do (exclude wins).",
    )
    ttl: str = Field(
        default="168h",
        max_length=DURATION_MAX,
        pattern=DURATION_PATTERN,
        description="A preview with no new rollout for this long is removed (default 7 days): "
        "each new commit rolled out starts the time again.",
    )
    max_age: str | None = Field(
        default=None,
        max_length=DURATION_MAX,
        pattern=DURATION_PATTERN,
        description="A cap on a preview's life from its creation, new commits or not; unset, "
        "only ttl removes it.",
    )
    max_count: int = Field(default=10, ge=0, le=1000, description="Live previews at most.")
    secret_refs: list[SecretRef] = Field(
        default_factory=list, max_length=MAX_SECRET_REFS, description="Secrets every preview gets."
    )


class ProjectSpec(Model):
    source: SourceSpec = Field(description="The Git repository and how it is watched.")
    build: BuildSpec = Field(description="How images are built and where they are pushed.")
    domain_pool_ref: NameRef = Field(description="The DomainPool hosts are allocated from.")
    app: AppSpec = Field(default_factory=AppSpec, description="How the app runs.")
    environments: list[EnvironmentTemplate] = Field(
        default_factory=list,
        max_length=20,
        description="The long-lived environments, one per entry.",
        json_schema_extra=MAP_BY_NAME,
    )
    preview_environments: PreviewSpec = Field(
        default_factory=PreviewSpec, description="Per-branch preview environments."
    )


class EnvironmentSummary(Model):
    name: str = Field(description="The environment.")
    type: str = Field(default="standard", description="standard or preview.")
    phase: Phase | None = Field(default=None, description="Its phase.")
    url: str | None = Field(default=None, description="Where it answers.")


class BranchStatus(Model):
    name: str = Field(description="A branch Kapsa builds.")
    commit: str | None = Field(default=None, description="Its head at the last poll.")
    built_commit: str | None = Field(
        default=None, description="The last commit of this branch built successfully."
    )
    image: str | None = Field(default=None, description="The image of builtCommit, by digest.")


class PreviewStatus(Model):
    name: str = Field(description="The preview Environment's name (the branch's slug).")
    branch: str = Field(description="The branch it previews.")
    commit: str | None = Field(default=None, description="The branch's head at the last poll.")
    built_commit: str | None = Field(
        default=None, description="The newest commit of the branch built successfully."
    )
    image: str | None = Field(default=None, description="The image of builtCommit, by digest.")
    build_state: str = Field(
        default="None", description="None, Running, Succeeded or Failed: the head's build."
    )
    message: str | None = Field(default=None, description="The builder's message on failure.")
    build_started_at: str | None = Field(
        default=None,
        description="When Kapsa first saw the head's build running (RFC 3339); it measures "
        "the build's duration.",
    )
    gone: bool = Field(
        default=False,
        description="The branch was missing from enough consecutive successful listings.",
    )
    expired_commit: str | None = Field(
        default=None,
        description="The commit whose preview expired by TTL: only a newer commit brings the "
        "preview back.",
    )
    waiting: bool = Field(
        default=False, description="Over previewEnvironments.maxCount: waits for a free slot."
    )


class ProjectStatus(Model):
    phase: Phase = Field(default=Phase.PENDING, description="Where the Project stands.")
    message: str | None = Field(default=None, description="Why, for people.")
    latest_commit: str | None = Field(
        default=None,
        description="The newest commit of the first environment's branch built successfully; "
        "each environment's status.commit says what it runs.",
    )
    short_commit: str | None = Field(
        default=None, description="latestCommit's first 12 characters, for `kubectl get`."
    )
    latest_image: str | None = Field(default=None, description="The image of latestCommit.")
    namespace: str | None = Field(default=None, description="The namespace Kapsa made for it.")
    branches: list[BranchStatus] = Field(
        default_factory=list,
        description="What Kapsa knows per built branch.",
        json_schema_extra=MAP_BY_NAME,
    )
    previews: list[PreviewStatus] = Field(
        default_factory=list,
        description="Branches with a preview, and the state of their builds.",
        json_schema_extra=MAP_BY_NAME,
    )
    environments: list[EnvironmentSummary] = Field(
        default_factory=list,
        description="Its environments and their URLs.",
        json_schema_extra=MAP_BY_NAME,
    )
    conditions: list[Condition] = condition_list_field()
    observed_generation: int | None = Field(default=None, description="The spec last acted on.")
    last_transition: LastTransition | None = Field(
        default=None, description="The newest transition, as written to the ledger."
    )
    last_poll_time: str | None = Field(default=None, description="When branches were last read.")
    last_handled_reconcile_at: str | None = Field(
        default=None,
        description="The kapsa.io/reconcile-requested-at annotation last acted on, after "
        "reading the branches anew: `kapsa reconcile` waits for it.",
    )


class Project(Resource[ProjectSpec, ProjectStatus]):
    """A Git repository Kapsa builds and the environments it runs; owns its namespace."""

    kind_name: ClassVar[str] = "Project"
    plural: ClassVar[str] = "projects"
    short_names: ClassVar[tuple[str, ...]] = ("kproj",)
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Phase", type="string", json_path=".status.phase", description="Where it stands."
        ),
        PrinterColumn(name="Ready", type="string", json_path=READY_STATUS, description="Ready."),
        PrinterColumn(
            name="Commit",
            type="string",
            json_path=".status.shortCommit",
            description="The newest commit built, shortened.",
        ),
        PrinterColumn(
            name="Message", type="string", json_path=READY_MESSAGE, description="Why (not) Ready."
        ),
        AGE_COLUMN,
        PrinterColumn(
            name="Namespace",
            type="string",
            json_path=".status.namespace",
            description="Where its environments live.",
            priority=1,
        ),
        PrinterColumn(
            name="Image",
            type="string",
            json_path=".status.latestImage",
            description="The image of the newest commit built.",
            priority=1,
        ),
    )
    kind: str = "Project"
