"""The `kapsa` command. Each sub-command lives in its own module and registers on `app`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

app = typer.Typer(
    name="kapsa",
    help="Run apps from Git on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Sub-commands inherit the names, so `kapsa history -h` works as `kapsa -h` does.
    context_settings={"help_option_names": ["-h", "--help"]},
)


def kapsa_version() -> str:
    """The installed package's version, as `pip show kapsa` reports it."""
    try:
        return version("kapsa")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"kapsa {kapsa_version()}")
        raise typer.Exit


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print Kapsa's version and exit.",
        ),
    ] = False,
) -> None:
    """Run apps from Git on Kubernetes."""


def main() -> None:
    from kapsa.cli import commands  # noqa: F401  (registers the sub-commands)

    app()
