"""The Dockerfile builder image of the test ground: Debian's buildah and git, as installed here.

A cluster pulls its builder image from a registry; this machine can pull from none, so the image
is assembled from the programs Debian installed on it (`buildah`, `git` with its https helper,
`ssh`), every shared library they load (as `ldd` lists them) and busybox for the shell, then
pushed to the local registry like any other image. What it holds is what buildah needs to build
without a daemon: containers' `policy.json` and `registries.conf`, a `storage.conf` choosing the
vfs driver (no overlay mounts inside a container), and `/var/tmp` for layers being written.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from kapsa.controlplane.images import BUSYBOX, Image, Layer
from kapsa.errors import KapsaError

#: The programs a build runs, besides busybox's shell and tools.
PROGRAMS = (
    Path("/usr/bin/buildah"),
    Path("/usr/bin/git"),
    Path("/usr/lib/git-core/git-remote-http"),
    Path("/usr/bin/ssh"),
)
#: busybox applets the build script uses.
APPLETS = ("sh", "[", "cat", "echo", "grep", "tee", "tail", "printf", "test", "env", "ls", "chmod")
#: Files buildah reads from /etc/containers, written as Debian ships them for one build.
POLICY = b'{"default": [{"type": "insecureAcceptAnything"}]}\n'
REGISTRIES = b'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
STORAGE = (
    b'[storage]\ndriver = "vfs"\nrunroot = "/var/run/containers/storage"\n'
    b'graphroot = "/var/lib/containers/storage"\n'
)
_LIB_RE = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


class BuilderImageError(KapsaError):
    """A program the builder image needs is not installed here."""


def _libraries(program: Path) -> list[Path]:
    listing = subprocess.run(
        ["ldd", str(program)], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for line in listing.splitlines():
        match = _LIB_RE.search(line.strip())
        if match:
            found.append(Path(match.group(1)))
    return found


def _missing() -> list[str]:
    missing = [str(p) for p in PROGRAMS if not p.exists()]
    if not BUSYBOX.exists():
        missing.append(str(BUSYBOX))
    return missing


def builder_image() -> Image:
    """The image a Dockerfile build Job runs: `sh -c SCRIPT` with git and buildah on PATH."""
    missing = _missing()
    if missing:
        raise BuilderImageError(
            f"the builder image needs {', '.join(missing)} (Debian: apt-get install buildah git "
            "openssh-client busybox-static)"
        )
    layer = Layer()
    for folder in ("bin", "etc", "etc/containers", "etc/ssl", "tmp", "var", "var/tmp", "root"):
        layer.directory(folder, mode=0o1777 if folder.endswith("tmp") else 0o755)
    layer.file("bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
    for applet in APPLETS:
        layer.symlink(f"bin/{applet}", "busybox")
    files: dict[Path, None] = {}
    for program in PROGRAMS:
        files[program] = None
        for library in _libraries(program):
            files[library] = None
    made: set[str] = {"bin", "etc", "tmp", "var", "root"}
    for path in sorted(files):
        real = Path(os.path.realpath(path))
        parts = path.parent.parts[1:]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                layer.directory(folder)
                made.add(folder)
        layer.file(str(path), real.read_bytes(), mode=0o755)
    layer.symlink("usr/lib/git-core/git-remote-https", "git-remote-http")
    layer.file("etc/containers/policy.json", POLICY)
    layer.file("etc/containers/registries.conf", REGISTRIES)
    layer.file("etc/containers/storage.conf", STORAGE)
    certificates = Path("/etc/ssl/certs/ca-certificates.crt")
    if certificates.exists():
        layer.directory("etc/ssl/certs")
        layer.file("etc/ssl/certs/ca-certificates.crt", certificates.read_bytes())
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    layer.file("etc/group", b"root:x:0:\n")
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    return Image.build(
        layers=[layer],
        entrypoint=["/bin/sh"],
        env={
            "PATH": "/usr/bin:/bin:/usr/lib/git-core",
            "HOME": "/root",
            "BUILDAH_ISOLATION": "chroot",
            "STORAGE_DRIVER": "vfs",
        },
        labels={"io.kapsa.builder": "buildah"},
    )
