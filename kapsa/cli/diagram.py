"""`kapsa diagram`: print a kind's state machine, drawn from the definition the operator runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from kapsa.cli import app
from kapsa.machines import mermaid


class DiagramKind(StrEnum):
    """The kinds that have a state machine."""

    PROJECT = "project"
    ENVIRONMENT = "environment"


class DiagramFormat(StrEnum):
    """Output formats; Mermaid renders on GitHub and in most Markdown viewers."""

    MERMAID = "mermaid"


@app.command()
def diagram(
    kind: Annotated[DiagramKind, typer.Argument(help="Which machine to draw.")],
    output_format: Annotated[
        DiagramFormat, typer.Option("--format", help="How to draw it.")
    ] = DiagramFormat.MERMAID,
) -> None:
    """Print the state diagram of Projects or Environments."""
    if output_format is DiagramFormat.MERMAID:
        typer.echo(mermaid("project" if kind is DiagramKind.PROJECT else "environment"))
