"""The Project's fields as tables for docs/developer-guide.md: `python -m kapsa.api.fields`.

Generated from the models, so the guide lists exactly the fields the API server accepts, with
the descriptions `kubectl explain` shows; tests/docs fails when the checked-in guide differs.
Each row carries an example value taken from `EXAMPLE_SPEC` / `EXAMPLE_STATUS`, which are
validated against the models, so no example can name a field or a value the API refuses.
"""

from __future__ import annotations

import json
import sys
import types
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUndefined

from kapsa.api.project import ProjectSpec, ProjectStatus

BEGIN = "<!-- BEGIN GENERATED {name}: python -m kapsa.api.fields -->"
END = "<!-- END GENERATED {name} -->"

#: A Project spec that sets every field, as a developer would write it.
EXAMPLE_SPEC: dict[str, Any] = {
    "source": {
        "git": {
            "url": "https://git.corp.com/myapp/api.git",
            "secretRef": {"name": "api-git", "namespace": "kapsa-system"},
        },
        "pollInterval": "5m",
        "webhookSecretRef": {"name": "api-webhook", "namespace": "kapsa-system"},
    },
    "build": {
        "strategy": "auto",
        "builder": {"kind": "ClusterBuilder", "name": "default"},
        "registryRef": {"name": "harbor"},
        "repository": "myapp/api",
        "dockerfile": "Dockerfile",
        "context": ".",
    },
    "domainPoolRef": {"name": "apps"},
    "app": {
        "port": 8080,
        "replicas": 2,
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "healthPath": "/healthz",
        "rolloutDeadline": "10m",
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    },
    "environments": [
        {
            "name": "dev",
            "branch": "main",
            "autoSync": True,
            "secretRefs": [{"name": "api-secrets-dev"}],
            "autoRollback": False,
        },
        {
            "name": "prod",
            "branch": "main",
            "autoSync": False,
            "secretRefs": [{"name": "api-secrets-prod"}],
            "autoRollback": True,
        },
    ],
    "previewEnvironments": {
        "enabled": True,
        "include": ["feature/*"],
        "exclude": ["feature/wip-*"],
        "ttl": "168h",
        "maxAge": "30d",
        "maxCount": 10,
        "secretRefs": [{"name": "api-secrets-preview"}],
    },
}

_COMMIT = "def456e0c7a1b2c3d4e5f60718293a4b5c6d7e8f"
_IMAGE = "harbor.corp.com/myapp/api@sha256:3b0c9a...e1"

#: What Kapsa reports for that Project once it runs, with one preview open.
EXAMPLE_STATUS: dict[str, Any] = {
    "phase": "Running",
    "message": "All 2 environments are running.",
    "latestCommit": _COMMIT,
    "shortCommit": _COMMIT[:12],
    "latestImage": _IMAGE,
    "namespace": "api",
    "branches": [
        {"name": "main", "commit": _COMMIT, "builtCommit": _COMMIT, "image": _IMAGE},
    ],
    "previews": [
        {
            "name": "feature-new-api",
            "branch": "feature/new-api",
            "commit": "9a8b7c6d",
            "builtCommit": "5e4d3c2b",
            "image": "harbor.corp.com/myapp/api@sha256:77aa...02",
            "buildState": "Failed",
            "message": "Error: Build 'api-feature-new-api-build-2' failed: npm install failed",
            "buildStartedAt": "2026-11-27T09:58:10Z",
            "gone": False,
            "expiredCommit": "1f2e3d4c",
            "waiting": False,
        }
    ],
    "environments": [
        {
            "name": "dev",
            "type": "standard",
            "phase": "Running",
            "url": "https://dev.api.apps.corp.com",
        },
    ],
    "conditions": [
        {
            "type": "BuildSucceeded",
            "status": "True",
            "reason": "BuildSucceeded",
            "message": "images built for main@def456e",
            "lastTransitionTime": "2026-11-27T10:00:00Z",
            "observedGeneration": 3,
        }
    ],
    "observedGeneration": 3,
    "lastTransition": {
        "seq": 7,
        "from": "Deploying",
        "to": "Running",
        "trigger": "environments_ready",
        "reason": "Ready",
        "message": "All 2 environments are running.",
        "at": "2026-11-27T10:00:05Z",
        "commit": _COMMIT,
        "image": _IMAGE,
    },
    "lastPollTime": "2026-11-27T10:04:00Z",
    "lastHandledReconcileAt": "2026-11-27T10:03:58.120000Z",
}


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally or as list items), and whether a list."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _model_in(inner[0]) if len(inner) == 1 else (None, False)
    if origin is list:
        model, _ = _model_in(get_args(annotation)[0])
        return model, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:  # a constrained type: its constraints are in the schema
        return _type_name(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner)
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if origin is Literal:
        return " \\| ".join(str(a) for a in get_args(annotation))
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return " \\| ".join(str(member.value) for member in annotation)
        if issubclass(annotation, BaseModel):
            return "object"
        return {str: "string", int: "integer", bool: "boolean", float: "number"}.get(
            annotation, annotation.__name__
        )
    return str(annotation)


def _wire(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value)


def _default(info: Any) -> str:
    if info.default_factory is not None:
        return f"`{_wire(info.default_factory())}`"
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "-"
    return f"`{_wire(info.default)}`"


def _example(example: Any, path: list[str]) -> Any:
    """The value at `path` in the example; list items by their first entry."""
    node = example
    for key in path:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def rows(model: type[BaseModel], example: dict[str, Any], prefix: str) -> list[list[str]]:
    """One row per field, depth first: path, type, default, example, description.

    Objects get a row of their own without an example: their fields' rows carry one each.
    """
    found: list[list[str]] = []

    def walk(current: type[BaseModel], path: list[str], shown: str) -> None:
        for name, info in current.model_fields.items():
            wire = info.alias or to_camel(name)
            nested, many = _model_in(info.annotation)
            here, label = [*path, wire], f"{shown}.{wire}"
            value = _example(example, here)
            sample = "" if value is None or nested is not None else f"`{_wire(value)}`"
            description = (info.description or "").replace("|", "\\|").replace("\n", " ")
            found.append(
                [f"`{label}`", _type_name(info.annotation), _default(info), sample, description]
            )
            if nested is not None:
                walk(nested, here, label + ("[]" if many else ""))

    walk(model, [], prefix)
    return found


def table(name: str) -> str:
    """The markdown table `name` ("spec" or "status"), between its markers."""
    model, example = (
        (ProjectSpec, EXAMPLE_SPEC) if name == "spec" else (ProjectStatus, EXAMPLE_STATUS)
    )
    lines = [
        BEGIN.format(name=name),
        "| Field | Type | Default | Example | What it means |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(model, example, name)]
    lines.append(END.format(name=name))
    return "\n".join(lines)


TABLES = ("spec", "status")


def update(document: str) -> str:
    """`document` with each generated table replaced by the models' current one."""
    for name in TABLES:
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start = document.index(begin)
        stop = document.index(end, start) + len(end)
        document = document[:start] + table(name) + document[stop:]
    return document


if __name__ == "__main__":
    if len(sys.argv) == 2:
        from pathlib import Path

        page = Path(sys.argv[1])
        page.write_text(update(page.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        sys.stdout.write("\n\n".join(table(name) for name in TABLES) + "\n")
