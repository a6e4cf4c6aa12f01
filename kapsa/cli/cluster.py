"""What the commands that talk to the cluster share: the kubeconfig option and failing cleanly."""

from __future__ import annotations

from typing import NoReturn

import typer

from kapsa.k8s.client import Kube

KUBECONFIG_HELP = "Kubeconfig file; the usual ones (KUBECONFIG, ~/.kube/config) when unset."


def fail(command: str, message: str) -> NoReturn:
    """One line on stderr, exit 1: what went wrong, in the words of the command that failed."""
    typer.echo(f"{command}: {message}", err=True)
    raise typer.Exit(code=1)


def kube(kubeconfig: str | None, *, command: str = "kapsa") -> Kube:
    """A client for the cluster, or a one-line error saying the kubeconfig could not be loaded."""
    try:
        return Kube.from_kubeconfig(kubeconfig)
    except Exception as exc:  # the kubernetes package raises many kinds here
        fail(command, f"cannot load a kubeconfig: {exc}")
