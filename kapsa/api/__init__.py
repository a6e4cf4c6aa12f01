"""The four kinds users and admins write, as pydantic models: the one source of truth.

`crds/*.yaml` are generated from these models (`kapsa crds`), so a field exists in the API server
exactly when it exists here.
"""

from kapsa.api.common import (
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    Phase,
)
from kapsa.api.domainpool import DomainPool, DomainPoolSpec, DomainPoolStatus
from kapsa.api.environment import Environment, EnvironmentSpec, EnvironmentStatus, EnvironmentType
from kapsa.api.project import (
    AppSpec,
    BuildSpec,
    BuildStrategy,
    EnvironmentTemplate,
    PreviewSpec,
    Project,
    ProjectSpec,
    ProjectStatus,
    SourceSpec,
)
from kapsa.api.registry import Registry, RegistrySpec, RegistryStatus

__all__ = [
    "GROUP",
    "VERSION",
    "AppSpec",
    "BuildSpec",
    "BuildStrategy",
    "Condition",
    "ConditionStatus",
    "DomainPool",
    "DomainPoolSpec",
    "DomainPoolStatus",
    "Environment",
    "EnvironmentSpec",
    "EnvironmentStatus",
    "EnvironmentTemplate",
    "EnvironmentType",
    "Phase",
    "PreviewSpec",
    "Project",
    "ProjectSpec",
    "ProjectStatus",
    "Registry",
    "RegistrySpec",
    "RegistryStatus",
    "SourceSpec",
]
