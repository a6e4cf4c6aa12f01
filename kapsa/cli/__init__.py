"""The `kapsa` command. Each sub-command lives in its own module and registers on `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="kapsa",
    help="Run apps from Git on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    from kapsa.cli import commands  # noqa: F401  (registers the sub-commands)

    app()
