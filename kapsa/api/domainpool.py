"""DomainPool: a base domain hosts are allocated under, with its certificate issuer."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kapsa.api.common import (
    DNS_DOMAIN_PATTERN,
    Condition,
    Model,
    NameRef,
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
    printer_columns: ClassVar[tuple[tuple[str, str, str, str], ...]] = (
        ("Domain", "string", ".spec.baseDomain", "The base domain."),
        ("Issuer", "string", ".spec.clusterIssuerRef.name", "The ClusterIssuer."),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Issuer verified."),
        ("Age", "date", ".metadata.creationTimestamp", "Since creation."),
    )
    kind: str = "DomainPool"
