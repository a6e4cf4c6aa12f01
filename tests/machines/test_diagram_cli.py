"""`kapsa diagram` prints the machines the operator runs."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from kapsa.cli import app
from kapsa.cli import commands as _registers  # noqa: F401  (the sub-commands, as `kapsa` has them)
from kapsa.machines import mermaid, transitions_of

runner = CliRunner()


@pytest.mark.parametrize("kind", ["project", "environment"])
@pytest.mark.parametrize("extra", [[], ["--format", "mermaid"]])
def test_prints_the_diagram(kind: str, extra: list[str]) -> None:
    result = runner.invoke(app, ["diagram", kind, *extra])
    assert result.exit_code == 0, result.output
    assert result.output == mermaid(kind) + "\n"  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["project", "environment"])
def test_diagram_has_every_transition(kind: str) -> None:
    """Each declared move appears as an arrow, either from its state or from the Live box."""
    text = mermaid(kind)  # type: ignore[arg-type]
    assert text.startswith("stateDiagram-v2\n")
    for source, trigger, dest, _ in transitions_of(kind):  # type: ignore[arg-type]
        pattern = rf"^\s*(?:{source}|Live) --> {dest} : (?:\w+ / )*{trigger}(?: / \w+)*$"
        assert re.search(pattern, text, flags=re.MULTILINE), (source, trigger, dest)


def test_unknown_kind_is_refused() -> None:
    result = runner.invoke(app, ["diagram", "registry"])
    assert result.exit_code != 0
