"""Where the control-plane binaries come from, and building them when nowhere has them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kapsa.errors import ControlPlaneError

#: One stable folder outside any clone, so every checkout and CI run shares one build.
DEFAULT_CACHE = Path(os.environ.get("KAPSA_CACHE", "/var/cache/kapsa"))
KUBERNETES_SOURCE_VERSION = "1.20.2"
APT_PACKAGES = (
    "golang-go",
    "etcd-server",
    "rsync",
    "dpkg-dev",
    "golang-github-modern-go-reflect2-dev",
    "gcc",
    "libc6-dev",
)
REFLECT2_FIXED = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"[kapsa control plane] {message}", file=sys.stderr, flush=True)


#: Built from Kubernetes' source in one `make`, so the compile is paid once.
BUILT_BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "kubelet",
    "kube-scheduler",
    "kube-proxy",
)


@dataclass(frozen=True)
class Assets:
    """The binaries of one control plane, and of its node when present."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    kubectl: Path | None
    kubelet: Path | None = None
    kube_scheduler: Path | None = None
    kube_proxy: Path | None = None
    pause: Path | None = None

    @property
    def can_run_node(self) -> bool:
        """Whether a node can run beside the control plane with these binaries."""
        return None not in (
            self.kube_controller_manager,
            self.kubelet,
            self.kube_scheduler,
            self.kube_proxy,
            self.pause,
        )

    @classmethod
    def in_folder(cls, folder: Path) -> Assets | None:
        """The envtest layout: a folder holding `kube-apiserver`, `etcd` and optionally more."""
        apiserver = folder / "kube-apiserver"
        etcd = folder / "etcd"
        if not (apiserver.is_file() and etcd.exists()):
            return None

        def optional(name: str) -> Path | None:
            path = folder / name
            return path if path.is_file() else None

        return cls(
            etcd=etcd,
            kube_apiserver=apiserver,
            kube_controller_manager=optional("kube-controller-manager"),
            kubectl=optional("kubectl"),
            kubelet=optional("kubelet"),
            kube_scheduler=optional("kube-scheduler"),
            kube_proxy=optional("kube-proxy"),
            pause=optional("pause"),
        )


def cache_bin(cache: Path = DEFAULT_CACHE) -> Path:
    return cache / f"kubernetes-{KUBERNETES_SOURCE_VERSION}" / "bin"


def find_or_build_assets(
    *, cache: Path = DEFAULT_CACHE, progress: Progress = _stderr, build: bool = True
) -> Assets:
    """`KUBEBUILDER_ASSETS` first (as envtest does), then the cache, then a build.

    A user holding binaries of a newer Kubernetes thereby skips the build entirely.
    """
    env_folder = os.environ.get("KUBEBUILDER_ASSETS")
    if env_folder:
        found = Assets.in_folder(Path(env_folder))
        if found is None:
            raise ControlPlaneError(
                f"KUBEBUILDER_ASSETS={env_folder} holds no kube-apiserver and etcd"
            )
        return found
    found = Assets.in_folder(cache_bin(cache))
    if found is not None and found.can_run_node:
        return found
    if not build:
        raise ControlPlaneError(f"no control-plane binaries in {cache_bin(cache)}")
    build_from_debian_source(cache=cache, progress=progress)
    built = Assets.in_folder(cache_bin(cache))
    if built is None:  # pragma: no cover - the build checks its own output
        raise ControlPlaneError("the build finished but left no binaries")
    return built


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise ControlPlaneError(f"{' '.join(cmd)} failed ({result.returncode}):\n{tail}")


def _ensure_deb_src() -> None:
    sources = Path("/etc/apt/sources.list.d")
    src_file = sources / "kapsa-deb-src.sources"
    if any("deb-src" in p.read_text() for p in sources.glob("*.sources")):
        return
    base = sources / "debian.sources"
    if not base.exists():
        raise ControlPlaneError("no /etc/apt/sources.list.d/debian.sources to derive deb-src from")
    src_file.write_text(base.read_text().replace("Types: deb\n", "Types: deb-src\n"))
    _run(["apt-get", "update", "-q"])


def build_from_debian_source(*, cache: Path = DEFAULT_CACHE, progress: Progress = _stderr) -> None:
    """Build the control plane, kubectl and a node's binaries from Debian's source package.

    Debian ships Kubernetes 1.20 as source only; its vendored reflect2 v1.0.1 crashes under
    Go >= 1.18 on the first custom-resource request, so the fixed 1.0.2 from Debian's Go
    packages replaces it before the build. etcd comes from Debian's `etcd-server` binary package.
    """
    bin_dir = cache_bin(cache)
    work = cache / "work"
    progress(f"building Kubernetes {KUBERNETES_SOURCE_VERSION} into {bin_dir} (once; ~8 minutes)")
    progress("1/5 enabling Debian source packages and installing the Go toolchain")
    _ensure_deb_src()
    _run(
        ["apt-get", "install", "-y", "-q", *APT_PACKAGES],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    progress("2/5 fetching Debian's kubernetes source package")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _run(["apt-get", "source", "-q", "kubernetes"], cwd=work)
    src = next(p for p in work.iterdir() if p.is_dir() and p.name.startswith("kubernetes-"))
    progress("3/5 replacing the vendored reflect2 with Debian's fixed 1.0.2")
    vendored = src / "vendor/github.com/modern-go/reflect2"
    shutil.rmtree(vendored)
    vendored.mkdir(parents=True)
    for f in REFLECT2_FIXED.iterdir():
        if f.suffix in {".go", ".s"} and not f.name.endswith("_test.go"):
            shutil.copy(f, vendored / f.name)
    progress(f"4/5 compiling {', '.join(BUILT_BINARIES)} (the long step)")
    gopath = src / ".go"
    (gopath / "src/k8s.io").mkdir(parents=True, exist_ok=True)
    link = gopath / "src/k8s.io/kubernetes"
    if not link.exists():
        link.symlink_to("../../..")
    env = {
        **os.environ,
        "GOPATH": str(gopath),
        "CGO_ENABLED": "0",
        "GOFLAGS": "",
        "GOCACHE": str(cache / "gocache"),
    }
    _run(
        ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in BUILT_BINARIES)],
        cwd=link,
        env=env,
    )
    progress("5/5 caching the binaries")
    out = src / "_output/local/bin/linux/amd64"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in BUILT_BINARIES:
        shutil.copy2(out / name, bin_dir / name)
    # The pod sandbox image's one binary, from the same tree: no image can be pulled here.
    _run(
        ["gcc", "-Os", "-static", "-o", str(bin_dir / "pause"), "build/pause/linux/pause.c"],
        cwd=src,
    )
    etcd = shutil.which("etcd") or "/usr/bin/etcd"
    (bin_dir / "etcd").unlink(missing_ok=True)
    (bin_dir / "etcd").symlink_to(etcd)
    shutil.rmtree(work, ignore_errors=True)
    progress(f"done: {bin_dir}")
