"""Pieces every kind shares: metadata, conditions, references, durations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "kapsa.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: The one duration syntax of Kapsa, in the CRDs and on the command line alike: Go-style
#: durations as users write them for Kubernetes (`90s`, `5m`, `168h`, `1h30m`), plus days and
#: weeks (`7d`, `2w`), which previews' lifetimes and `--since` are naturally counted in.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
DURATION_EXAMPLES = "e.g. 90s, 5m, 1h30m, 7d"
#: An RFC 1123 label: what a Kubernetes object name inside a host must be.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
#: An RFC 1123 subdomain, at least two labels: a domain hosts are allocated under.
DNS_DOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$"

#: Bounds every spec field carries, so that no object can grow past what etcd and the operator's
#: memory are meant for. Names follow Kubernetes' own limits.
NAME_MAX = 253
NAMESPACE_MAX = 63
BRANCH_MAX = 255
DURATION_MAX = 32
TEXT_MAX = 1024
#: The longest duration Kapsa acts on; longer ones (which would overflow timedelta) mean this.
LONGEST_DURATION = timedelta(days=3650)

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, *, floor: timedelta = timedelta(0)) -> timedelta:
    """`1h30m` -> 90 minutes, clamped to [floor, LONGEST_DURATION]. The schema has already
    rejected anything else; the clamp is what keeps `99999999999h` from overflowing timedelta
    in every reconcile of the Project."""
    if not re.fullmatch(DURATION_PATTERN, text.strip()):
        raise ValueError(f"not a duration: {text!r} ({DURATION_EXAMPLES})")
    text = text.strip()
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    seconds = min(seconds, LONGEST_DURATION.total_seconds())
    return max(timedelta(seconds=seconds), floor)


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields kept out (the API prunes)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Phase(StrEnum):
    """Where a Project or an Environment stands; the states of its machine."""

    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    RUNNING = "Running"
    FAILED = "Failed"
    EXPIRING = "Expiring"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """One aspect of an object's state, as the Kubernetes API conventions define it."""

    type: str = Field(description="What this condition is about, e.g. Ready or BuildSucceeded.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase word for programs and alerts.")
    message: str = Field(default="", description="What happened, for people.")
    last_transition_time: str | None = Field(
        default=None, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this condition was computed from."
    )


class LastTransition(Model):
    """The newest ledger row, kept in status so that a crash between the status write and the
    ledger write can be repaired: status is the truth about now, the ledger the full history."""

    seq: int = Field(description="The transition's number for this object, from 1.")
    from_state: str = Field(alias="from", description="The state it left.")
    to_state: str = Field(alias="to", description="The state it entered.")
    trigger: str = Field(description="The machine's trigger.")
    reason: str = Field(default="", description="Why, as a CamelCase word.")
    message: str = Field(default="", description="Why, for people.")
    at: str = Field(description="When (RFC 3339).")
    commit: str | None = Field(default=None, description="The commit involved, if any.")
    image: str | None = Field(default=None, description="The image involved, if any.")


class NameRef(Model):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The referenced object's name."
    )


class NamespacedRef(Model):
    name: str = Field(
        min_length=1, max_length=NAME_MAX, description="The referenced object's name."
    )
    namespace: str | None = Field(
        default=None,
        max_length=NAMESPACE_MAX,
        pattern=DNS_LABEL_PATTERN,
        description="Its namespace; defaults to the namespace Kapsa runs in (kapsa-system).",
    )


class ObjectMeta(Model):
    """The part of metadata Kapsa reads; the rest passes through untouched."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)
    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)


@dataclass(frozen=True, kw_only=True)
class PrinterColumn:
    """One column of `kubectl get`; priority 1 shows only with `-o wide`."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


#: The Ready condition's status and message, as `kubectl get` columns read them.
READY_STATUS = '.status.conditions[?(@.type=="Ready")].status'
READY_MESSAGE = '.status.conditions[?(@.type=="Ready")].message'
AGE_COLUMN = PrinterColumn(
    name="Age", type="date", json_path=".metadata.creationTimestamp", description="Since creation."
)


class Resource(Model, Generic[SpecT, StatusT]):
    """A custom resource: the class variables tell the CRD generator how to register it."""

    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]] = ()
    scope: ClassVar[Literal["Cluster", "Namespaced"]]
    categories: ClassVar[tuple[str, ...]] = ("kapsa",)
    #: The columns of `kubectl get`.
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = ()

    api_version: str = API_VERSION
    kind: str = ""
    metadata: ObjectMeta
    spec: SpecT
    status: StatusT | None = None


def condition_list_field(
    description: str = "The latest observations of the object's state.",
) -> Any:
    """`conditions`, a list keyed by type (the generator marks it as a map)."""
    return Field(default_factory=list, description=description, json_schema_extra=MAP_BY_TYPE)


MAP_BY_TYPE: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
MAP_BY_NAME: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}
