"""The SIMULATOR of what kpack's buildpacks make of a commit: a real, runnable image, made here.

kpack's controller and its builder images cannot run on these machines, so the kpack SIMULATOR
uses this to produce the image of the commit it is asked to build, on a static busybox userland
with the repository's files in /workspace, as the Procfile buildpack's output would be: the
Procfile's `web` process as the entrypoint, an unprivileged user; a repository without a Procfile
fails detection, as it would. (Dockerfile builds are real: buildah in a Job on the node.)
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


def image_of_commit(
    git_dir: Path,
    revision: str,
    *,
    labels: dict[str, str],
) -> Image:
    """Build the image of `revision` in the bare repository `git_dir` with buildpacks."""
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
        return buildpack_image(tree, labels=labels)
