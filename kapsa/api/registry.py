"""Registry: where images are pushed, verified by a connectivity and authentication test."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kapsa.api.common import (
    AGE_COLUMN,
    Condition,
    Model,
    NamespacedRef,
    PrinterColumn,
    Resource,
    condition_list_field,
)


class RegistrySpec(Model):
    server: str = Field(
        pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?$",
        description="The registry's host[:port], e.g. harbor.corp.com.",
    )
    credentials_secret_ref: NamespacedRef = Field(
        description="A kubernetes.io/dockerconfigjson or kubernetes.io/basic-auth Secret with "
        "push credentials."
    )
    insecure: bool = Field(
        default=False, description="Talk plain HTTP instead of HTTPS (test registries only)."
    )


class RegistryStatus(Model):
    verified: bool = Field(default=False, description="The last check reached and logged in.")
    last_verified_time: str | None = Field(default=None, description="When it was last checked.")
    conditions: list[Condition] = condition_list_field()
    observed_generation: int | None = Field(default=None, description="The spec last checked.")


class Registry(Resource[RegistrySpec, RegistryStatus]):
    """An image registry Kapsa pushes builds to, checked by logging in."""

    kind_name: ClassVar[str] = "Registry"
    plural: ClassVar[str] = "registries"
    short_names: ClassVar[tuple[str, ...]] = ("kreg",)
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Server", type="string", json_path=".spec.server", description="The registry."
        ),
        PrinterColumn(
            name="Verified",
            type="boolean",
            json_path=".status.verified",
            description="Reached and logged in.",
        ),
        AGE_COLUMN,
    )
    kind: str = "Registry"
