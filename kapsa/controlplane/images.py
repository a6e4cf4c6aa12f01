"""Container images assembled here, byte for byte, since none can be pulled on these machines.

An image is a list of layers (gzipped tars), a config and a manifest, as the OCI image spec and
Docker's v2 schema 2 lay them out. The node's pod sandbox ("pause") and the sandbox's app images
are made this way from files on this machine: a static binary, the app's own files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@lru_cache(maxsize=8)
def _gzip(tar: bytes) -> bytes:
    """Compressed once: the userland layer is the same in every image built here."""
    return gzip.compress(tar, compresslevel=1, mtime=0)  # speed over size: local registries


@dataclass
class Layer:
    """One layer's files in order, with fixed times and owners: equal input, equal digest."""

    _entries: list[tuple[tarfile.TarInfo, bytes | None]] = field(default_factory=list)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        info.mtime = 0
        info.uname = info.gname = ""
        self._entries.append((info, data))

    def directory(self, path: str, *, mode: int = 0o755, uid: int = 0) -> Layer:
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
        self._add(info)
        return self

    def file(self, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0) -> Layer:
        info = tarfile.TarInfo(path.strip("/"))
        info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
        self._add(info, data)
        return self

    def symlink(self, path: str, target: str) -> Layer:
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._add(info)
        return self

    def tree(self, root: Path, *, under: str, uid: int = 0) -> Layer:
        """Every file below `root`, at `under` in the image, with its executable bit kept."""
        self.directory(under, uid=uid)
        for path in sorted(root.rglob("*")):
            name = f"{under.rstrip('/')}/{path.relative_to(root).as_posix()}"
            if path.is_dir():
                self.directory(name, uid=uid)
            elif path.is_file():
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                self.file(name, path.read_bytes(), mode=mode, uid=uid)
        return self

    def tar(self) -> bytes:
        """The layer as an uncompressed tar."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as out:
            for info, data in self._entries:
                out.addfile(info, io.BytesIO(data) if data is not None else None)
        return buffer.getvalue()


@dataclass(frozen=True)
class Image:
    """The blobs of one image, ready to push to a registry or import into containerd."""

    config: bytes
    layers: tuple[bytes, ...]
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @classmethod
    def build(
        cls,
        *,
        layers: list[Layer],
        entrypoint: list[str],
        cmd: list[str] | None = None,
        user: str = "",
        workdir: str = "/",
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> Image:
        tars = [layer.tar() for layer in layers]
        blobs = tuple(_gzip(tar) for tar in tars)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "Entrypoint": entrypoint or None,
                    "Cmd": cmd,
                    "User": user,
                    "WorkingDir": workdir,
                    "Env": [f"{k}={v}" for k, v in (env or {"PATH": "/bin"}).items()],
                    "Labels": labels or {},
                },
                "rootfs": {"type": "layers", "diff_ids": [sha256(tar) for tar in tars]},
                # One entry per layer: builders that stack on this image (buildah --layers)
                # match the history against the layers.
                "history": [
                    {"created": "1970-01-01T00:00:00Z", "created_by": f"kapsa: layer {index}"}
                    for index in range(len(tars))
                ],
            },
            sort_keys=True,
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": sha256(config)},
                "layers": [
                    {"mediaType": LAYER_TAR_GZIP, "size": len(blob), "digest": sha256(blob)}
                    for blob in blobs
                ],
            },
            sort_keys=True,
        ).encode()
        return cls(config=config, layers=blobs, manifest=manifest)

    def archive(self, *, name: str) -> bytes:
        """An OCI image layout in one tar, which `ctr images import` reads, named `name`."""
        index = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MANIFEST_V2,
                        "digest": self.digest,
                        "size": len(self.manifest),
                        "annotations": {"io.containerd.image.name": name},
                    }
                ],
            }
        ).encode()
        out = Layer()
        out.file("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        out.file("index.json", index)
        out.directory("blobs").directory("blobs/sha256")
        for blob in (self.config, self.manifest, *self.layers):
            out.file(f"blobs/sha256/{sha256(blob).removeprefix('sha256:')}", blob)
        return out.tar()


#: Where Debian's busybox-static puts the one binary every image here is built on.
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = (
    "sh", "cat", "cp", "cut", "echo", "env", "httpd", "ls", "mkdir", "sleep", "sort", "test",
    "wget", "grep", "sed", "rm", "true", "false", "id", "printf",
)  # fmt: skip


def busybox_userland(*, busybox: Path = BUSYBOX, user_id: int = 1000) -> Layer:
    """A minimal root filesystem: busybox with its applets, /tmp, and one unprivileged user."""
    layer = Layer()
    for folder in ("bin", "etc", "tmp"):
        layer.directory(folder, mode=0o1777 if folder == "tmp" else 0o755)
    layer.file("bin/busybox", busybox.read_bytes(), mode=0o755)
    for applet in BUSYBOX_APPLETS:
        layer.symlink(f"bin/{applet}", "busybox")
    layer.file(
        "etc/passwd",
        f"root:x:0:0:root:/:/bin/sh\napp:x:{user_id}:{user_id}:app:/tmp:/bin/sh\n".encode(),
    )
    layer.file("etc/group", f"root:x:0:\napp:x:{user_id}:\n".encode())
    return layer


def pause_image(pause_binary: Path) -> Image:
    """The pod sandbox: Kubernetes' own `pause`, compiled from the same source tree."""
    layer = Layer().file("pause", pause_binary.read_bytes(), mode=0o755)
    return Image.build(layers=[layer], entrypoint=["/pause"], user="65535")
