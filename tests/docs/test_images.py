"""The pictures in docs/images are drawn from the code and the sources checked in beside them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kapsa.api import DomainPool, Environment, Project, Registry
from kapsa.cli import app, commands  # noqa: F401  (registers the sub-commands, as `kapsa` does)
from kapsa.cli.images import ARCHITECTURE, sources, stamp
from kapsa.machines import KINDS, dot
from kapsa.machines.render import definition

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "images"
REDRAW = "run `python -m kapsa.cli.images`"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("name", sorted(sources(IMAGES)))
def test_each_picture_was_drawn_from_its_current_source(name: str) -> None:
    drawn = (IMAGES / f"{name}.svg").read_text(encoding="utf-8")

    assert stamp(sources(IMAGES)[name]) in drawn, f"docs/images/{name}.svg is stale: {REDRAW}"


@pytest.mark.parametrize("kind", KINDS)
def test_the_state_pictures_come_from_the_machines(kind: str) -> None:
    assert (IMAGES / f"{kind}-states.dot").read_text(encoding="utf-8") == dot(kind), REDRAW  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_kapsa_diagram_draws_every_state_as_svg(kind: str) -> None:
    result = CliRunner().invoke(app, ["diagram", kind, "--format", "svg"])

    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.stdout.encode())
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    titles = {node.findtext(f"{SVG}title") for node in nodes}
    assert set(definition(kind).machine.states) <= titles  # type: ignore[arg-type]


def test_the_architecture_names_every_kind_and_who_applies_it() -> None:
    source = sources(IMAGES)[ARCHITECTURE]
    for resource in (Project, Environment, DomainPool, Registry):
        assert f"    {resource.kind_name} [" in source, resource.kind_name
    for edge in ("admin -> DomainPool", "admin -> Registry", "developer -> Project"):
        assert edge in source


@pytest.mark.parametrize(
    ("page", "path"),
    [
        ("README.md", "docs/images/architecture.svg"),
        ("docs/platform-admin.md", "images/architecture.svg"),
        ("docs/state-machines.md", "images/project-states.svg"),
        ("docs/state-machines.md", "images/environment-states.svg"),
    ],
)
def test_the_docs_show_the_pictures(page: str, path: str) -> None:
    assert f"]({path})" in (REPO / page).read_text(encoding="utf-8")
    assert (REPO / page).parent.joinpath(path).is_file()
