"""docs/state-machines.md is what operators read; it must say what the machines do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kapsa.machines import KINDS, mermaid, transitions_of
from kapsa.machines.docs import render_document

DOC = Path(__file__).resolve().parents[2] / "docs" / "state-machines.md"
REGENERATE = "run `python -m kapsa.machines.docs > docs/state-machines.md`"


def test_checked_in_page_is_generated_from_the_machines() -> None:
    assert DOC.read_text(encoding="utf-8") == render_document(), REGENERATE


@pytest.mark.parametrize("kind", KINDS)
def test_page_shows_each_diagram_as_printed(kind: str) -> None:
    assert f"```mermaid\n{mermaid(kind)}\n```" in DOC.read_text(encoding="utf-8")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_every_transition_is_explained(kind: str) -> None:
    page = DOC.read_text(encoding="utf-8")
    for source, trigger, dest, description in transitions_of(kind):  # type: ignore[arg-type]
        cells = rf"\| `{trigger}` \| {dest} \| `\w+` \| {re.escape(description)} \|"
        row = re.search(rf"^\| [^|]*\b{source}\b[^|]* {cells}$", page, flags=re.MULTILINE)
        assert row, f"{kind}: {source} --{trigger}--> {dest} is not in the page"
        assert description.endswith(".")
