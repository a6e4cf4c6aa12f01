"""The ledger API's OpenAPI 3.1 description: the one place its routes and parameters are written.

Everything else follows from it, so the description cannot drift from what is served: the
internal listener routes `/api/v1/` by the paths below (`match`), a handler is handed only the
query parameters declared for its operation (`Operation.known`), the response schemas are read
off the ledger's records (kapsa.ledger.records) field by field, and the document itself is
served at `/api/v1/openapi.json`. The tests check that each handler reads exactly the parameters
declared for it, and fuzz the running API against this document with schemathesis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from kapsa.ledger.records import Deployment, Entry
from kapsa.web.messages import NAME_MAX, NAME_PATTERN

#: The version of the API the paths carry, not of Kapsa.
API_VERSION = "v1"
PREFIX = f"/api/{API_VERSION}"

_NAME: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX,
    "pattern": f"^{NAME_PATTERN}$",
}
_TIME: dict[str, Any] = {"type": "string", "minLength": 1}
_TIME_TEXT = (
    "ISO 8601 (2025-03-01T12:00:00Z; without a zone, UTC) or a span back from the server's "
    "clock (90s, 30m, 2h, 1d12h)."
)


@dataclass(frozen=True, kw_only=True)
class Parameter:
    name: str
    description: str
    schema: Mapping[str, Any]
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One GET route of the ledger API."""

    operation_id: str
    path: str
    """Under PREFIX, with `{name}` for each path parameter, e.g. `/history/{project}`."""
    summary: str
    ok: Mapping[str, Any]
    """The schema of the 200 answer."""
    path_parameters: tuple[Parameter, ...] = ()
    query: tuple[Parameter, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 503)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(part for part in f"{PREFIX}{self.path}".split("/") if part)

    def known(self, query: Mapping[str, str]) -> dict[str, str]:
        """The query parameters this operation declares; any other is not the handler's."""
        names = {parameter.name for parameter in self.query}
        return {key: value for key, value in query.items() if key in names}


_PROJECT = Parameter(name="project", description="The Project's name.", schema=_NAME, required=True)
_ENV = Parameter(
    name="env",
    description="The Environment's name (the object's, e.g. web-prod).",
    schema=_NAME,
    required=True,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        operation_id="history",
        path="/history/{project}",
        summary=(
            "The Project's transitions and its Environments', oldest first (what `kapsa "
            "history` prints). Only rows of Environments in the Project's own namespace count."
        ),
        path_parameters=(_PROJECT,),
        query=(
            Parameter(
                name="env",
                description="Only this Environment's transitions.",
                schema=_NAME,
            ),
            Parameter(name="since", description=f"From this time on. {_TIME_TEXT}", schema=_TIME),
            Parameter(name="until", description=f"Up to this time. {_TIME_TEXT}", schema=_TIME),
            Parameter(
                name="limit",
                description="Only the newest this many, still oldest first.",
                schema={"type": "integer", "minimum": 1, "maximum": 999_999_999},
            ),
        ),
        ok={"type": "array", "items": {"$ref": "#/components/schemas/Entry"}},
    ),
    Operation(
        operation_id="deployments",
        path="/deployments/{project}/{env}",
        summary="Each image that ran in the Environment, oldest first, from when to when.",
        path_parameters=(_PROJECT, _ENV),
        ok={"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}},
    ),
    Operation(
        operation_id="at",
        path="/at/{project}/{env}",
        summary="What ran in the Environment at a time, as the ledger knew it then; null: nothing.",
        path_parameters=(_PROJECT, _ENV),
        query=(Parameter(name="time", description=_TIME_TEXT, schema=_TIME, required=True),),
        ok={"oneOf": [{"$ref": "#/components/schemas/Deployment"}, {"type": "null"}]},
    ),
    Operation(
        operation_id="openapi",
        path="/openapi.json",
        summary="This description.",
        ok={"type": "object", "required": ["openapi", "paths"]},
        errors=(401, 403),
    ),
)

_ERRORS = {
    400: "A parameter is not what it must be; `error` says which and why.",
    401: "Only when the listener checks tokens (bound off loopback): no or an unknown token.",
    403: "Only when the listener checks tokens: the caller may not get this Project.",
    503: "The server has no ledger, or cannot read it now, or cannot check the token now.",
}

#: Python types of the records' fields (as their annotations spell them) in JSON Schema.
_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "Entry": {"$ref": "#/components/schemas/Entry"},
}


def _record_schema(record: type[Any], description: str) -> dict[str, Any]:
    """A record's `to_dict` as JSON Schema: every field, always present, nothing else."""
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        spelled = str(field.type)
        optional = spelled.endswith(" | None")
        base = _TYPES[spelled.removesuffix(" | None")]
        if optional and "type" in base:
            properties[field.name] = {**base, "type": [base["type"], "null"]}
        elif optional:
            properties[field.name] = {"oneOf": [base, {"type": "null"}]}
        else:
            properties[field.name] = dict(base)
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _parameter(parameter: Parameter, where: str) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "in": where,
        "required": parameter.required or where == "path",
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(operation: Operation) -> dict[str, Any]:
    responses = {"200": _json(operation.ok, "OK")}
    for status in operation.errors:
        responses[str(status)] = _json({"$ref": "#/components/schemas/Error"}, _ERRORS[status])
    return {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "parameters": [
            *(_parameter(p, "path") for p in operation.path_parameters),
            *(_parameter(p, "query") for p in operation.query),
        ],
        "responses": responses,
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document, as served at `/api/v1/openapi.json` (the same object each call:
    do not change it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kapsa ledger API",
            "version": API_VERSION,
            "description": (
                "The audit ledger, read-only, on the operator's internal listener: what "
                "`kapsa history --server` reads. Bound to loopback it answers anyone who "
                "reaches it (`kubectl port-forward`); bound to the pod network it wants a "
                "Kubernetes bearer token allowed to get the Project."
            ),
        },
        "paths": {
            f"{PREFIX}{operation.path}": {"get": _operation(operation)} for operation in OPERATIONS
        },
        "components": {
            "schemas": {
                "Entry": _record_schema(Entry, "One transition of a Project or an Environment."),
                "Deployment": _record_schema(
                    Deployment,
                    "An image that ran in an Environment; `ended` is null while it runs.",
                ),
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                    "additionalProperties": False,
                },
            },
            "securitySchemes": {
                "kubernetes": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Kubernetes token, checked by TokenReview and "
                    "SubjectAccessReview; only off loopback.",
                }
            },
        },
        "security": [{}, {"kubernetes": []}],
    }


def match(segments: tuple[str, ...]) -> tuple[Operation, dict[str, str]] | None:
    """The operation a request path names, with its path parameters; None for no such path."""
    for operation in OPERATIONS:
        template = operation.segments
        if len(template) != len(segments):
            continue
        found: dict[str, str] = {}
        for part, given in zip(template, segments, strict=True):
            if part.startswith("{") and part.endswith("}"):
                found[part[1:-1]] = given
            elif part != given:
                break
        else:
            return operation, found
    return None
