"""SIMULATORS of what the builders make of a commit: real, runnable images, made here.

kpack's controller and its builder images, and the Dockerfile builder's image, cannot run on
these machines, so the simulators use this to produce an image from the commit they are asked
to build, on a static busybox userland with the repository's files in /workspace:

- buildpacks (the Procfile buildpack's output): the Procfile's `web` process as the entrypoint,
  an unprivileged user; a repository without a Procfile fails detection, as it would;
- a Dockerfile, read for the little the sandbox's apps use: `CMD` (shell form) as the command
  and `USER`; every other instruction is taken as copying the repository to /workspace.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

from kapsa.controlplane.images import Image, Layer, busybox_userland
from kapsa.errors import BuildError

WORKSPACE = "/workspace"
APP_USER = 1000


def web_process(tree: Path) -> str:
    """The Procfile's `web` command, as the Procfile buildpack reads it."""
    procfile = tree / "Procfile"
    if not procfile.is_file():
        raise BuildError("ERROR: No buildpack groups passed detection (no Procfile)")
    for line in procfile.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web" and command.strip():
            return command.strip()
    raise BuildError("ERROR: the Procfile has no web process")


def buildpack_image(tree: Path, *, labels: dict[str, str] | None = None) -> Image:
    command = web_process(tree)
    return Image.build(
        layers=[busybox_userland(user_id=APP_USER), Layer().tree(tree, under=WORKSPACE)],
        entrypoint=["/bin/sh", "-c", command],
        user=str(APP_USER),
        workdir=WORKSPACE,
        labels=labels,
    )


def dockerfile_image(
    tree: Path, *, dockerfile: str = "Dockerfile", labels: dict[str, str] | None = None
) -> Image:
    path = tree / dockerfile
    if not path.is_file():
        raise BuildError(f"error: {dockerfile}: no such file in the repository")
    command, user = "", ""
    for line in path.read_text().splitlines():
        instruction, _, argument = line.strip().partition(" ")
        if instruction.upper() == "CMD":
            command = argument.strip()
        elif instruction.upper() == "USER":
            user = argument.strip()
    if not command:
        raise BuildError(f"error: {dockerfile} has no CMD")
    return Image.build(
        layers=[busybox_userland(user_id=APP_USER), Layer().tree(tree, under=WORKSPACE)],
        entrypoint=["/bin/sh", "-c", command],
        user=user,
        workdir=WORKSPACE,
        labels=labels,
    )


def image_of_commit(
    git_dir: Path,
    revision: str,
    *,
    labels: dict[str, str],
    dockerfile: str | None = None,
) -> Image:
    """Build the image of `revision` in the bare repository `git_dir`, from its Dockerfile when
    `dockerfile` names one, else with buildpacks."""
    with tempfile.TemporaryDirectory(prefix="kapsa-buildpacks-") as folder:
        archive = Path(folder) / "source.tar"
        done = subprocess.run(
            ["git", "--git-dir", str(git_dir), "archive", "-o", str(archive), revision],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(f"cannot read {revision}: {done.stderr.strip()}")
        tree = Path(folder) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        if dockerfile is not None:
            return dockerfile_image(tree, dockerfile=dockerfile, labels=labels)
        return buildpack_image(tree, labels=labels)
