"""`kapsa diagram`: print a kind's state machine, drawn from the definition the operator runs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from kapsa.cli import app
from kapsa.errors import KapsaError
from kapsa.machines import Kind, dot, mermaid


class DiagramKind(StrEnum):
    """The kinds that have a state machine."""

    PROJECT = "project"
    ENVIRONMENT = "environment"


class DiagramFormat(StrEnum):
    """Output formats; Mermaid renders on GitHub and in most Markdown viewers, Graphviz's DOT
    and SVG (drawn by `dot`) everywhere else."""

    MERMAID = "mermaid"
    DOT = "dot"
    SVG = "svg"


@app.command()
def diagram(
    kind: Annotated[DiagramKind, typer.Argument(help="Which machine to draw.")],
    output_format: Annotated[
        DiagramFormat, typer.Option("--format", help="How to draw it.")
    ] = DiagramFormat.MERMAID,
) -> None:
    """Print the state diagram of Projects or Environments."""
    name: Kind = "project" if kind is DiagramKind.PROJECT else "environment"
    if output_format is DiagramFormat.MERMAID:
        typer.echo(mermaid(name))
    elif output_format is DiagramFormat.DOT:
        typer.echo(dot(name), nl=False)
    else:
        from kapsa.cli.images import svg

        try:
            typer.echo(svg(dot(name)), nl=False)
        except KapsaError as exc:
            typer.echo(f"kapsa diagram: {exc}", err=True)
            raise typer.Exit(code=1) from None
