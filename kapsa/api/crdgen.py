"""CustomResourceDefinitions derived from the models, so the API server never prunes a field we use.

The API server silently drops every field its structural schema lacks, so the schemas are never
written by hand: pydantic's JSON Schema of each kind is rewritten into the subset
apiextensions.k8s.io/v1 accepts (every `$ref` inlined, Optional collapsed to its type, no titles)
and the models' descriptions travel along, which is what `kubectl explain` shows users.

This module stays free of YAML (the api layer is pure); `kapsa crds` renders and writes the files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kapsa.api.common import GROUP, VERSION, Resource
from kapsa.api.domainpool import DomainPool
from kapsa.api.environment import Environment
from kapsa.api.project import Project
from kapsa.api.registry import Registry
from kapsa.errors import KapsaError

#: Every kind Kapsa serves, in the order the CRD files are listed.
RESOURCES: tuple[type[Resource[Any, Any]], ...] = (Project, Environment, DomainPool, Registry)

#: JSON Schema keywords a structural schema may carry as they are.
_KEPT = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    }
)
#: Keywords with no meaning to the API server.
_DROPPED = frozenset({"title", "$defs"})
_NULL = {"type": "null"}


class CRDGenerationError(KapsaError):
    """A model uses a construct a structural schema cannot express; fix the model."""


def crd_for(resource_cls: type[Resource[Any, Any]]) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    kind = resource_cls.kind_name
    plural = resource_cls.plural
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(resource_cls)},
        "subresources": {"status": {}},
    }
    if resource_cls.printer_columns:
        version["additionalPrinterColumns"] = [
            {
                "name": column.name,
                "type": column.type,
                "jsonPath": column.json_path,
                "description": column.description,
                **({"priority": column.priority} if column.priority else {}),
            }
            for column in resource_cls.printer_columns
        ]
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if resource_cls.short_names:
        names["shortNames"] = list(resource_cls.short_names)
    if resource_cls.categories:
        names["categories"] = list(resource_cls.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": resource_cls.scope,
            "versions": [version],
        },
    }


def crd_file_name(resource_cls: type[Resource[Any, Any]]) -> str:
    """`kapsa.io_projects.yaml`: the layout controller-gen uses, familiar to operators' users."""
    return f"{GROUP}_{resource_cls.plural}.yaml"


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD for every kind Kapsa serves."""
    return {crd_file_name(cls): crd_for(cls) for cls in RESOURCES}


def openapi_schema(resource_cls: type[Resource[Any, Any]]) -> dict[str, Any]:
    """The structural schema of a whole object: the envelope plus the model's spec and status."""
    json_schema = resource_cls.model_json_schema(by_alias=True, mode="validation")
    defs: Mapping[str, Any] = json_schema.get("$defs", {})
    properties = json_schema["properties"]
    kind = resource_cls.kind_name
    spec = _structural(properties["spec"], defs, "spec")
    spec["description"] = f"What the {kind} should be; written by its owner."
    status = _structural(properties["status"], defs, "status")
    status["description"] = f"What Kapsa last observed of the {kind}; written by the operator."
    return {
        "type": "object",
        "description": _kind_description(resource_cls),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": f"{GROUP}/{VERSION}: the versioned schema of this object.",
            },
            "kind": {"type": "string", "description": f"{kind}: the type of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }


def _kind_description(resource_cls: type[Resource[Any, Any]]) -> str:
    # The class's own docstring only: the generic base's would talk about CRD generation.
    doc = resource_cls.__dict__.get("__doc__") or resource_cls.kind_name
    return " ".join(doc.split())


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One node of pydantic's schema as the API server accepts it; `path` names it in errors."""
    merged = dict(node)
    if "$ref" in merged:
        name = merged.pop("$ref").rsplit("/", 1)[-1]
        # The field's own keys (its description, its default) win over the referenced model's.
        return _structural({**defs[name], **merged}, defs, path)
    if "anyOf" in merged:
        options = [option for option in merged.pop("anyOf") if option != _NULL]
        if len(options) != 1:
            raise CRDGenerationError(f"{path}: a union other than Optional[X] has no CRD schema")
        if merged.get("default", ...) is None:
            del merged["default"]
        return _structural({**options[0], **merged}, defs, path)
    if "const" in merged:
        merged["enum"] = [merged.pop("const")]
    if merged.get("default", ...) == "":
        # kube-apiserver 1.20 turns an empty-string default into null under server-side apply and
        # then rejects the CRD; the models fill in "" when reading, so nothing is lost.
        del merged["default"]

    out: dict[str, Any] = {}
    for key, value in merged.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {
                name: _structural(sub, defs, f"{path}.{name}") for name, sub in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = _structural(value, defs, f"{path}[]")
        elif key == "required":
            out[key] = sorted(value)
        elif key in _KEPT:
            # A copy: pydantic shares lists between $defs users, and YAML would alias them.
            out[key] = copy.deepcopy(value)
        else:
            raise CRDGenerationError(f"{path}: JSON Schema keyword {key!r} has no CRD equivalent")
    if "type" not in out:
        raise CRDGenerationError(f"{path}: every node of a structural schema needs a type")
    _check_list_map(out, path)
    return out


def _check_list_map(node: Mapping[str, Any], path: str) -> None:
    """The API server only accepts a list-map whose keys every item must carry."""
    if node.get("x-kubernetes-list-type") != "map":
        return
    items = node.get("items", {})
    missing = set(node.get("x-kubernetes-list-map-keys", ())) - set(items.get("required", ()))
    if missing:
        raise CRDGenerationError(f"{path}: list-map keys {sorted(missing)} must be required")
