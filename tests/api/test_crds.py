"""The CRD files match the models, and carry what `kubectl explain` and `kubectl get` show users."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from kapsa.api import Environment, Project
from kapsa.api.common import LONGEST_DURATION, Model, Resource, parse_duration
from kapsa.api.crdgen import RESOURCES, CRDGenerationError, all_crds, crd_for
from kapsa.cli import app
from kapsa.cli import commands as _commands  # noqa: F401  (registers `kapsa crds`)
from kapsa.cli.crds import render_all

REPO = Path(__file__).resolve().parents[2]


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below `node`, with its dotted path (`[]` for list items)."""
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def test_crds_folder_matches_the_models() -> None:
    on_disk = {path.name: path.read_text() for path in (REPO / "crds").glob("*.yaml")}
    assert on_disk == render_all(), "crds/ is out of date: run `kapsa crds`"


def test_check_lists_the_files_that_differ_and_write_fixes_them(tmp_path: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(app, ["crds", "--output-dir", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(render_all())
    assert runner.invoke(app, ["crds", "--output-dir", str(tmp_path), "--check"]).exit_code == 0

    projects = tmp_path / "kapsa.io_projects.yaml"
    edited = projects.read_text().replace("kproj", "proj")
    projects.write_text(edited)
    (tmp_path / "kapsa.io_registries.yaml").unlink()
    checked = runner.invoke(app, ["crds", "--output-dir", str(tmp_path), "--check"])
    assert checked.exit_code == 1
    assert "kapsa.io_projects.yaml" in checked.output
    assert "kapsa.io_registries.yaml" in checked.output
    assert "kapsa.io_environments.yaml" not in checked.output
    assert projects.read_text() == edited, "--check must write nothing"
    assert not (tmp_path / "kapsa.io_registries.yaml").exists()

    assert runner.invoke(app, ["crds", "--output-dir", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["crds", "--output-dir", str(tmp_path), "--check"]).exit_code == 0


def test_files_are_plain_yaml_one_crd_each() -> None:
    for name, text in render_all().items():
        (crd,) = list(yaml.safe_load_all(text))
        assert name == f"kapsa.io_{crd['spec']['names']['plural']}.yaml"
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.kapsa.io"
        assert "&id" not in text, "YAML anchors make the files hard to read and diff"


@pytest.mark.parametrize("resource_cls", RESOURCES, ids=lambda cls: cls.kind_name)
def test_every_property_has_a_description_and_a_type(resource_cls: Any) -> None:
    root = schema_of(crd_for(resource_cls))
    assert root["description"]
    for part in ("spec", "status"):
        for path, node in walk(root["properties"][part], part):
            assert node.get("description"), f"{resource_cls.kind_name} {path} has no description"
            assert "type" in node, f"{resource_cls.kind_name} {path} has no type"
            assert not {"anyOf", "oneOf", "allOf", "nullable", "title", "$ref"} & set(node), path


def test_only_spec_is_required_and_status_is_a_subresource() -> None:
    for crd in all_crds().values():
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert schema_of(crd)["required"] == ["spec"]
        assert schema_of(crd)["properties"]["metadata"] == {"type": "object"}


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for crd in all_crds().values():
        conditions = schema_of(crd)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_project_environments_are_keyed_by_name() -> None:
    spec = schema_of(crd_for(Project))["properties"]["spec"]
    environments = spec["properties"]["environments"]
    assert environments["x-kubernetes-list-map-keys"] == ["name"]
    assert {"name", "branch"} <= set(environments["items"]["required"])


def test_optional_fields_are_plain_types_and_enums_are_listed() -> None:
    spec = schema_of(crd_for(Project))["properties"]["spec"]["properties"]
    secret_ref = spec["source"]["properties"]["git"]["properties"]["secretRef"]
    assert secret_ref["type"] == "object"
    assert "default" not in secret_ref
    strategy = spec["build"]["properties"]["strategy"]
    assert strategy["enum"] == ["auto", "buildpacks", "dockerfile"]
    assert strategy["default"] == "auto"
    assert spec["source"]["properties"]["pollInterval"]["default"] == "5m"


def columns(resource_cls: Any) -> list[tuple[str, str, int]]:
    version = crd_for(resource_cls)["spec"]["versions"][0]
    return [
        (col["name"], col["jsonPath"], col.get("priority", 0))
        for col in version["additionalPrinterColumns"]
    ]


READY = '.status.conditions[?(@.type=="Ready")].status'
MESSAGE = '.status.conditions[?(@.type=="Ready")].message'


def test_printer_columns_are_what_kubectl_get_promises() -> None:
    # Short by default; the digest and the long message only with -o wide (priority 1).
    assert columns(Project) == [
        ("Phase", ".status.phase", 0),
        ("Ready", READY, 0),
        ("Commit", ".status.shortCommit", 0),
        ("Message", MESSAGE, 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("Namespace", ".status.namespace", 1),
        ("Image", ".status.latestImage", 1),
    ]
    assert columns(Environment) == [
        ("Type", ".spec.type", 0),
        ("Branch", ".spec.branch", 0),
        ("Phase", ".status.phase", 0),
        ("Ready", READY, 0),
        ("Commit", ".status.shortCommit", 0),
        ("URL", ".status.url", 0),
        ("Expires", ".status.expiresAt", 0),
        ("Age", ".metadata.creationTimestamp", 0),
        ("Message", MESSAGE, 1),
        ("Image", ".status.image", 1),
    ]


def test_names_and_scopes() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd["spec"] for crd in all_crds().values()}
    assert {kind: spec["scope"] for kind, spec in by_kind.items()} == {
        "Project": "Cluster",
        "Environment": "Namespaced",
        "DomainPool": "Cluster",
        "Registry": "Cluster",
    }
    project = by_kind["Project"]["names"]
    assert project["shortNames"] == ["kproj"]
    assert project["singular"] == "project"
    assert project["listKind"] == "ProjectList"
    assert all(spec["names"]["categories"] == ["kapsa"] for spec in by_kind.values())


class TagsSpec(Model):
    tags: dict[str, str] = Field(default_factory=dict, description="Free-form labels.")
    mode: Literal["fast"] = Field(default="fast", description="The only mode.")


class TagsStatus(Model):
    note: str | None = Field(default=None, description="A note.")


class Tagged(Resource[TagsSpec, TagsStatus]):
    """A kind for the generator alone."""

    kind_name: ClassVar[str] = "Tagged"
    plural: ClassVar[str] = "taggeds"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"


def test_free_maps_single_literals_and_optionals_have_structural_forms() -> None:
    properties = schema_of(crd_for(Tagged))["properties"]
    tags = properties["spec"]["properties"]["tags"]
    assert tags["type"] == "object"
    assert tags["additionalProperties"] == {"type": "string"}
    assert properties["spec"]["properties"]["mode"]["enum"] == ["fast"]
    assert properties["status"]["properties"]["note"] == {
        "type": "string",
        "description": "A note.",
    }


class UnionSpec(Model):
    value: int | str = Field(description="Either.")


class Unioned(Resource[UnionSpec, TagsStatus]):
    kind_name: ClassVar[str] = "Unioned"
    plural: ClassVar[str] = "unioneds"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"


class Item(Model):
    key: str = Field(default="", description="Not required, so not a usable map key.")


class LooseMapSpec(Model):
    items: list[Item] = Field(
        default_factory=list,
        description="Keyed by an optional field.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["key"]},
    )


class LooseMap(Resource[LooseMapSpec, TagsStatus]):
    kind_name: ClassVar[str] = "LooseMap"
    plural: ClassVar[str] = "loosemaps"
    scope: ClassVar[Literal["Cluster", "Namespaced"]] = "Cluster"


def test_models_the_api_server_would_refuse_fail_at_generation() -> None:
    with pytest.raises(CRDGenerationError, match=r"spec\.value: a union"):
        crd_for(Unioned)
    with pytest.raises(CRDGenerationError, match=r"spec\.items: list-map keys \['key'\]"):
        crd_for(LooseMap)


@pytest.mark.parametrize("resource_cls", [Project, Environment], ids=lambda c: c.kind_name)
def test_every_spec_field_a_team_writes_is_bounded(resource_cls: Any) -> None:
    """No string without maxLength (or a closed enum), no list without maxItems, no number
    without both ends: a team cannot grow an object past what etcd and the operator expect."""
    spec = schema_of(crd_for(resource_cls))["properties"]["spec"]
    needs = {"string": {"maxLength"}, "array": {"maxItems"}, "integer": {"minimum", "maximum"}}
    unbounded = [
        path
        for path, node in walk(spec, "spec")
        if "enum" not in node and not needs.get(node.get("type", ""), set()) <= set(node)
    ]
    assert unbounded == []


def test_durations_are_clamped_instead_of_overflowing() -> None:
    """A ttl of 99999999999999h used to overflow timedelta in every reconcile of its Project."""
    assert parse_duration("99999999999999h") == LONGEST_DURATION
    assert parse_duration("1ms", floor=timedelta(seconds=10)) == timedelta(seconds=10)
    assert parse_duration("90s", floor=timedelta(seconds=10)) == timedelta(seconds=90)
