"""The user docs say what the code does: the field tables, the example Project, the reasons."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from kapsa.api import Project
from kapsa.api.fields import EXAMPLE_SPEC, EXAMPLE_STATUS, TABLES, rows, table, update
from kapsa.api.project import ProjectSpec, ProjectStatus

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "developer-guide.md"
TROUBLESHOOTING = REPO / "docs" / "troubleshooting.md"
#: Where Kapsa decides the reasons users see in conditions and in the ledger.
REASON_SOURCES = ("kapsa/reconcile", "kapsa/registry", "kapsa/machines")
REGENERATE = "run `python -m kapsa.api.fields docs/developer-guide.md`"
_CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]+$")


def test_guide_field_tables_are_generated_from_the_models() -> None:
    page = GUIDE.read_text(encoding="utf-8")
    for name in TABLES:
        assert table(name) in page, f"the {name} table is stale: {REGENERATE}"
    assert update(page) == page, REGENERATE


def test_every_field_has_an_example() -> None:
    for model, example, prefix in (
        (ProjectSpec, EXAMPLE_SPEC, "spec"),
        (ProjectStatus, EXAMPLE_STATUS, "status"),
    ):
        for path, kind, _default, sample, description in rows(model, example, prefix):
            assert description, f"{path} has no description in the model"
            if kind != "object" and not kind.startswith("list of object"):
                assert sample, f"{path} has no example in kapsa.api.fields"


def test_examples_are_valid_projects() -> None:
    project = Project.model_validate(
        {"metadata": {"name": "api"}, "spec": EXAMPLE_SPEC, "status": EXAMPLE_STATUS}
    )
    # Validation drops what the models do not know; nothing may be dropped.
    assert project.spec.wire() == EXAMPLE_SPEC
    assert project.status is not None
    assert project.status.wire() == EXAMPLE_STATUS


def test_guide_shows_the_example_project() -> None:
    page = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)
    projects = [
        doc
        for block in blocks
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == "Project" and "status" not in doc
    ]
    assert projects, "the guide shows no Project"
    assert projects[0]["spec"] == EXAMPLE_SPEC


def _constants(node: ast.expr) -> list[str]:
    """String constants an expression can evaluate to: `"A"`, `"A" if x else "B"`, tuples."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple):
        return [n for element in target.elts for n in _names(element)]
    return []


def reasons_in_code() -> set[str]:
    """Every reason the code can set: in `reason=...`, `cond(type, ok, reason)`, or assigned to
    a variable named like a reason (`reason`, `blocked`), or a module constant of kapsa.registry."""
    found: set[str] = set()
    for folder in REASON_SOURCES:
        for path in sorted((REPO / folder).glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    for keyword in node.keywords:
                        if keyword.arg == "reason":
                            found.update(_constants(keyword.value))
                    func = node.func
                    called = (
                        func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    )
                    if called in ("cond", "condition", "set_condition") and len(node.args) >= 3:
                        found.update(_constants(node.args[2]))
                elif isinstance(node, ast.Assign):
                    for target in node.targets:
                        names = _names(target)
                        values = (
                            node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                        )
                        if len(names) == len(values):
                            for name, value in zip(names, values, strict=True):
                                if "reason" in name.lower() or name == "blocked":
                                    found.update(_constants(value))
                        if folder == "kapsa/registry" and names and names[0].isupper():
                            found.update(v for v in _constants(node.value) if _CAMEL.match(v))
    return {reason for reason in found if _CAMEL.match(reason)}


def test_the_extractor_finds_the_reasons_users_meet() -> None:
    found = reasons_in_code()
    for reason in (
        "BuildFailed",
        "SourceUnreachable",
        "InvalidSecret",
        "AuthenticationFailed",
        "DomainPoolNotReady",
        "IssuerNotFound",
        "RolloutDeadlineExceeded",
    ):
        assert reason in found


def test_troubleshooting_explains_every_reason_the_code_sets() -> None:
    page = TROUBLESHOOTING.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Z][A-Za-z0-9]+)`", page))
    missing = sorted(reasons_in_code() - documented)
    assert not missing, f"docs/troubleshooting.md does not explain: {', '.join(missing)}"
