"""What the platform admin installs, named once for the install, image and docs tests.

The permission tables live in docs/platform-admin.md and nowhere else: the admin reads them
there, and the tests parse them from there, so the documented rights, the manifest's rights and
the API server's answers cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OPERATOR_MANIFEST = DEPLOY / "kapsa-operator.yaml"
EXAMPLES = DEPLOY / "examples"
GUIDE = REPO / "docs" / "platform-admin.md"
NAMESPACE = "kapsa-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:kapsa"

#: Examples the install test applies to the API server (server-side dry run).
APPLIED_EXAMPLES = ("clusterissuer.yaml", "domainpool.yaml", "registry.yaml", "project.yaml")
#: Multi-document examples the install test applies whole (server-side dry run).
APPLIED_BUNDLES = ("internal-listener.yaml", "team-roles.yaml")
#: Examples of kinds the test cluster does not serve: (apiVersion, kind) is all that is checked.
PARSED_EXAMPLES = {"external-secret.yaml": ("external-secrets.io/v1", "ExternalSecret")}


def applied_by_tests() -> set[str]:
    """Repository paths a `kubectl apply -f` in the guide may name."""
    names = APPLIED_EXAMPLES + APPLIED_BUNDLES
    return {"deploy/kapsa-operator.yaml"} | {f"deploy/examples/{name}" for name in names}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class Permission(NamedTuple):
    group: str  # "" for the core group
    resource: str  # plural, or plural/subresource
    verb: str
    name: str | None  # a resourceNames restriction
    where: str  # "cluster" or the namespace of a Role

    def can_i(self) -> list[str]:
        """`kubectl auth can-i` arguments asking exactly this."""
        plural, _, subresource = self.resource.partition("/")
        target = f"{plural}.{self.group}" if self.group else plural
        if self.name:
            target += f"/{self.name}"
        args = [self.verb, target]
        if subresource:
            args.append(f"--subresource={subresource}")
        args += ["--all-namespaces"] if self.where == "cluster" else ["-n", self.where]
        return args


def _table(text: str, marker: str) -> list[list[str]]:
    """Body rows of the Markdown table between `<!-- marker -->` and `<!-- /marker -->`."""
    match = re.search(rf"<!-- {marker} -->(.*?)<!-- /{marker} -->", text, re.S)
    assert match, f"docs/platform-admin.md has no {marker} table"
    rows = [line.strip() for line in match.group(1).strip().splitlines()]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def documented_permissions(text: str) -> set[Permission]:
    """The guide's table of what Kapsa may do, one Permission per verb."""
    found = set()
    for group_cell, resource_cell, verbs_cell, where_cell, _why in _table(text, "rbac:allowed"):
        group = "" if group_cell == "core" else _ticked(group_cell)[0]
        named = re.search(r"named `([^`]+)`", resource_cell)
        name = named.group(1) if named else None
        resources = _ticked(resource_cell.split(" named ")[0])
        where = "cluster" if where_cell == "cluster" else _ticked(where_cell)[0]
        for resource in resources:
            for verb in (v.strip() for v in verbs_cell.split(",")):
                found.add(Permission(group, resource, verb, name, where))
    return found


def documented_refusals(text: str) -> list[list[str]]:
    """The guide's table of what Kapsa must not be able to do, as `kubectl auth can-i` args."""
    return [shlex.split(_ticked(row[0])[0]) for row in _table(text, "rbac:denied")]


def granted_permissions(docs: list[dict[str, Any]]) -> set[Permission]:
    """Every (group, resource, verb) the ClusterRole and Roles of the manifest grant."""
    found = set()
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        where = "cluster" if doc["kind"] == "ClusterRole" else doc["metadata"]["namespace"]
        for rule in doc["rules"]:
            for name in rule.get("resourceNames") or [None]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            found.add(Permission(group, resource, verb, name, where))
    return found
