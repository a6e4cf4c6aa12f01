"""DomainPool: a base domain hosts are allocated under, with its certificate issuer."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kapsa.api.common import (
    AGE_COLUMN,
    DNS_DOMAIN_PATTERN,
    READY_STATUS,
    Condition,
    Model,
    NameRef,
    PrinterColumn,
    Resource,
    condition_list_field,
)


class DomainPoolSpec(Model):
    base_domain: str = Field(
        pattern=DNS_DOMAIN_PATTERN,
        max_length=200,
        description="Hosts are <environment>.<project>.<baseDomain>, e.g. apps.corp.com.",
    )
    cluster_issuer_ref: NameRef = Field(
        description="The cert-manager ClusterIssuer that signs the hosts' certificates."
    )
    ingress_class_name: str = Field(
        default="nginx", min_length=1, description="The IngressClass of every Ingress."
    )


class DomainPoolStatus(Model):
    conditions: list[Condition] = condition_list_field()
    observed_generation: int | None = Field(default=None, description="The spec last checked.")


class DomainPool(Resource[DomainPoolSpec, DomainPoolStatus]):
    """A base domain environments get hosts under, and the issuer of their certificates."""

    kind_name: ClassVar[str] = "DomainPool"
    plural: ClassVar[str] = "domainpools"
    short_names: ClassVar[tuple[str, ...]] = ("dpool",)
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Domain", type="string", json_path=".spec.baseDomain", description="The domain."
        ),
        PrinterColumn(
            name="Issuer",
            type="string",
            json_path=".spec.clusterIssuerRef.name",
            description="The ClusterIssuer.",
        ),
        PrinterColumn(
            name="Ready", type="string", json_path=READY_STATUS, description="Issuer verified."
        ),
        AGE_COLUMN,
    )
    kind: str = "DomainPool"
