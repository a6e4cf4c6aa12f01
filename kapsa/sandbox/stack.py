"""Kapsa and everything it talks to, on one machine, assembled once for the sandbox and the tests.

A real control plane with a real node (where the machine allows one), a real git server, a real
registry and the real operator process, with SIMULATORS standing in only for what cannot run
here (kpack's builds, cert-manager's issuer check, and the kubelet where no node can run).
`kapsa sandbox` runs a `Stack` in a supervisor process; the test suite can take the same parts
one by one (`install_crds`, `apply_platform`, `start_simulators`, `OperatorProcess`), so what
users try and what the tests check is assembled by the same code.

The state file lets another process (`kapsa sandbox status`, `down`, `tour`) find what the
supervisor started: pids with their command lines (a pid is only signalled while it still runs
the recorded command, so a reused pid is never hit), ports, the kubeconfig and the ledger.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kapsa.api.crdgen import all_crds
from kapsa.controlplane import ControlPlane, find_or_build_assets
from kapsa.controlplane.buildah import builder_image
from kapsa.controlplane.images import Image, busybox_userland
from kapsa.controlplane.netns import NetworkNamespace
from kapsa.controlplane.node import why_no_node
from kapsa.errors import KapsaError
from kapsa.k8s.client import JSON, Kube
from kapsa.k8s.resources import (
    DOMAIN_POOL,
    ENVIRONMENT,
    PROJECT,
    REGISTRY,
    SERVICE,
    ResourceType,
)
from kapsa.sandbox.gitserver import GitServer
from kapsa.sandbox.registryserver import RegistryServer
from kapsa.sandbox.simulators import (
    CertManagerSimulator,
    CommitMessageFailPolicy,
    KpackSimulator,
    KubeletSimulator,
    Simulator,
)

SANDBOX_DIR_ENV = "KAPSA_SANDBOX_DIR"
STATE_FILE = "state.json"
KAPSA = str(Path(sys.executable).with_name("kapsa"))
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
#: deploy/examples of the checkout this module runs from, when it runs from one.
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
KAPSA_NAMESPACE = "kapsa-system"
#: How often the sample Project polls its repository: seconds, so the tour never waits long.
SAMPLE_POLL = "3s"

Progress = Callable[[str], None]


class SandboxError(KapsaError):
    """The sandbox could not start, or a command found it in a state it cannot work with."""


def default_dir() -> Path:
    """$KAPSA_SANDBOX_DIR, else ~/.kapsa/sandbox: one fixed place, so `down` finds `up`."""
    configured = os.environ.get(SANDBOX_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".kapsa" / "sandbox"


# -- third-party kinds ---------------------------------------------------------------------------


def _standin_crd(
    *, group: str, version: str, kind: str, plural: str, scope: str, columns: list[JSON]
) -> JSON:
    """A CRD that stores anything, with a status subresource: all a SIMULATOR needs."""
    schema: JSON = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "singular": kind.lower(),
                "plural": plural,
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


#: kpack's Image and cert-manager's ClusterIssuer, reduced to what Kapsa and the SIMULATORS use.
THIRD_PARTY_CRDS: list[JSON] = [
    _standin_crd(
        group="kpack.io",
        version="v1alpha2",
        kind="Image",
        plural="images",
        scope="Namespaced",
        columns=[
            {"name": "LatestImage", "type": "string", "jsonPath": ".status.latestImage"},
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
        ],
    ),
    _standin_crd(
        group="cert-manager.io",
        version="v1",
        kind="ClusterIssuer",
        plural="clusterissuers",
        scope="Cluster",
        columns=[
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            }
        ],
    ),
]


def install_crds(control_plane: ControlPlane, *, third_party: list[JSON] | None = None) -> None:
    """Kapsa's CRDs (from the models) and the third-party kinds, served before this returns."""
    documents = [*all_crds().values(), *(THIRD_PARTY_CRDS if third_party is None else third_party)]
    # Server-side apply: large CRDs do not fit kubectl's last-applied annotation.
    control_plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        input=yaml.safe_dump_all(documents, sort_keys=False),
    )
    names = [f"crd/{doc['metadata']['name']}" for doc in documents]
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


# -- the platform objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    """The names of the admin's objects a Project refers to."""

    registry: str = "local"
    domain_pool: str = "apps"
    cluster_issuer: str = "sandbox-issuer"
    push_secret: str = "registry-push"  # noqa: S105  (a Secret's name)
    push_secret_namespace: str = KAPSA_NAMESPACE
    base_domain: str = "apps.sandbox.test"


def _example(name: str, kind: str) -> JSON | None:
    """The first `kind` object in deploy/examples/`name`, when the checkout has that file."""
    path = EXAMPLES / name
    if not path.is_file():
        return None
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if isinstance(doc, dict) and doc.get("kind") == kind:
            return doc
    return None


def platform_documents(registry_server: RegistryServer) -> tuple[Platform, list[JSON]]:
    """The ClusterIssuer, DomainPool and Registry an admin applies, pointed at local servers.

    deploy/examples are used where the checkout has them, so the sandbox shows the same objects
    the quickstart tells admins to apply; only the registry's address and the plain-HTTP flag
    are replaced, since the local registry is not the example's.
    """
    defaults = Platform()
    issuer = _example("clusterissuer.yaml", "ClusterIssuer") or {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": defaults.cluster_issuer},
        "spec": {"selfSigned": {}},
    }
    pool = _example("domainpool.yaml", "DomainPool") or {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "DomainPool",
        "metadata": {"name": defaults.domain_pool},
        "spec": {
            "baseDomain": defaults.base_domain,
            "clusterIssuerRef": {"name": defaults.cluster_issuer},
            "ingressClassName": "nginx",
        },
    }
    pool["spec"]["clusterIssuerRef"] = {"name": issuer["metadata"]["name"]}
    registry = _example("registry.yaml", "Registry") or {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Registry",
        "metadata": {"name": defaults.registry},
        "spec": {
            "credentialsSecretRef": {
                "name": defaults.push_secret,
                "namespace": defaults.push_secret_namespace,
            }
        },
    }
    registry["spec"]["server"] = registry_server.server
    registry["spec"]["insecure"] = not registry_server.tls
    secret = registry["spec"]["credentialsSecretRef"]
    platform = Platform(
        registry=registry["metadata"]["name"],
        domain_pool=pool["metadata"]["name"],
        cluster_issuer=issuer["metadata"]["name"],
        push_secret=secret["name"],
        push_secret_namespace=secret.get("namespace") or KAPSA_NAMESPACE,
        base_domain=pool["spec"]["baseDomain"],
    )
    return platform, [issuer, pool, registry]


def apply_platform(control_plane: ControlPlane, registry_server: RegistryServer) -> Platform:
    """What the admin does once: kapsa-system, the push Secret, issuer, pool and registry."""
    platform, documents = platform_documents(registry_server)
    for namespace in {KAPSA_NAMESPACE, platform.push_secret_namespace}:
        control_plane.kubectl("create", "namespace", namespace, check=False)
    secret = control_plane.kubectl(
        "-n",
        platform.push_secret_namespace,
        "create",
        "secret",
        "docker-registry",
        platform.push_secret,
        f"--docker-server={registry_server.server}",
        f"--docker-username={registry_server.username}",
        f"--docker-password={registry_server.password}",
        "--dry-run=client",
        "-o",
        "yaml",
    ).stdout
    control_plane.kubectl("apply", "-f", "-", input=secret)
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    return platform


@dataclass(frozen=True)
class BuildImages:
    """The images Dockerfile builds use on this test ground, in its registry."""

    builder: str
    """The builder (buildah, git, sh), by digest: what `kapsa operator --builder-image` gets."""
    base: str
    """A base image for Dockerfiles' FROM: busybox, as the sample app's Dockerfile uses."""


def push_build_images(registry_server: RegistryServer) -> BuildImages:
    """Assemble the builder image from this machine's buildah and git, push it and a base."""
    server = registry_server.server
    builder = registry_server.push(builder_image(), repository="kapsa/builder", tag="buildah")
    # As Docker Hub's busybox: no entrypoint, so a Dockerfile's shell-form CMD runs as written.
    base = Image.build(layers=[busybox_userland()], entrypoint=[], cmd=["sh"])
    registry_server.push(base, repository="kapsa/busybox", tag="1")
    return BuildImages(
        builder=f"{server}/kapsa/builder@{builder}", base=f"{server}/kapsa/busybox:1"
    )


@dataclass
class Simulators:
    """The SIMULATORS beside a cluster, each standing in for a controller that cannot run here.

    kpack's and cert-manager's always; the kubelet's only where no real node runs (see
    kapsa.controlplane.node). Dockerfile builds are real: the controller manager's Job controller
    starts them on the node, where buildah runs.
    """

    kpack: KpackSimulator
    cert_manager: CertManagerSimulator
    kubelet: KubeletSimulator | None = None

    def running(self) -> list[Simulator]:
        found = [self.kpack, self.cert_manager, self.kubelet]
        return [simulator for simulator in found if simulator is not None]

    def stop(self) -> None:
        for simulator in self.running():
            simulator.stop()


def start_simulators(
    kube: Kube,
    *,
    registry_server: RegistryServer,
    git_server: GitServer,
    node: bool,
    fail: CommitMessageFailPolicy | None = None,
) -> Simulators:
    """The SIMULATORS the cluster needs; with a real `node`, not the kubelet's."""
    simulators = Simulators(
        kpack=KpackSimulator(kube, registry=registry_server, git_server=git_server, fail=fail),
        cert_manager=CertManagerSimulator(kube),
        kubelet=None if node else KubeletSimulator(kube),
    )
    for simulator in simulators.running():
        simulator.start()
    return simulators


# -- the sample application ----------------------------------------------------------------------


#: Written as the sample app's `Dockerfile` where Dockerfile builds can run (a real node).
DOCKERFILE_TEMPLATE = "Dockerfile.template"


def sample_files(*, base_image: str | None = None) -> dict[str, str]:
    """The sample app's files, as its first commit holds them; with a Dockerfile FROM
    `base_image` when given (the Project still builds with buildpacks until switched)."""
    files = {
        path.relative_to(SAMPLE_APP).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(SAMPLE_APP.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    template = files.pop(DOCKERFILE_TEMPLATE)
    if base_image is not None:
        files["Dockerfile"] = template.replace("{base}", base_image)
    return files


def sample_project(*, git_url: str, platform: Platform, name: str = "hello") -> JSON:
    """The Project a developer writes for the sample app: dev follows main, prod is promoted.

    deploy/examples/project.yaml is used where the checkout has it, with the local repository,
    the local platform's names and no Secret references (the sandbox has none of those Secrets,
    and a rollout waits for a Secret it cannot find).
    """
    project = _example("project.yaml", "Project") or {
        "apiVersion": "kapsa.io/v1alpha1",
        "kind": "Project",
        "metadata": {"name": name},
        "spec": {
            "build": {"repository": f"sandbox/{name}"},
            "app": {"port": 8080, "rolloutDeadline": "2m"},
            "environments": [
                {"name": "dev", "branch": "main", "autoSync": True},
                {"name": "prod", "branch": "main", "autoSync": False},
            ],
            "previewEnvironments": {
                "enabled": True,
                "include": ["feature/*"],
                "ttl": "24h",
                "maxCount": 5,
            },
        },
    }
    spec = project["spec"]
    spec["source"] = {"git": {"url": git_url}, "pollInterval": SAMPLE_POLL}
    spec["build"]["registryRef"] = {"name": platform.registry}
    # Buildpacks until the developer switches: the repository holds a Dockerfile too.
    spec["build"]["strategy"] = "buildpacks"
    spec["domainPoolRef"] = {"name": platform.domain_pool}
    for environment in spec.get("environments", []):
        environment.pop("secretRefs", None)
    spec.get("previewEnvironments", {}).pop("secretRefs", None)
    return project


# -- the operator --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """SIGKILL when the process that started it dies, so a crashed supervisor leaks nothing."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class OperatorProcess:
    """`kapsa operator` in a child process, as users run it, with its log kept in `workdir`."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        ledger_url: str,
        workdir: Path,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.env = env or {}
        self.kubeconfig = kubeconfig
        self.ledger_url = ledger_url
        self.workdir = workdir
        self.extra = extra or []
        self.log = workdir / "operator.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def argv(self) -> list[str]:
        return [
            KAPSA,
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--ledger",
            self.ledger_url,
            "--allow-insecure-sources",
            "--allow-private-hosts",
            "--min-poll-interval",
            "1s",
            "--internal-port",
            "0",
            "--git-cache",
            str(self.workdir / "git-cache"),
            "--resync",
            "30s",
            *self.extra,
        ]

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> OperatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches the supervisor, which stops
            # the operator in order, rather than every process at once.
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# -- processes by pid ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRecord:
    """A process the sandbox started: its pid, and the command it ran, to recognise it later."""

    name: str
    pid: int
    cmdline: list[str]

    def alive(self) -> bool:
        """Running, and still the recorded command (not a later process given the same pid)."""
        return command_line(self.pid) == self.cmdline


def command_line(pid: int) -> list[str] | None:
    """The argv of a running process, None when there is none (zombies included)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    if not raw or state == "Z":
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _label(argv: list[str]) -> str:
    if Path(argv[0]).name.startswith("python") and len(argv) > 1 and argv[1] != "-c":
        argv = argv[1:]  # a script run by its interpreter: name the script
    program = Path(argv[0]).name
    if program in ("git", "kapsa") and len(argv) > 1:
        return f"{program} {argv[1]}"
    return program


def children_of(pid: int) -> list[ProcessRecord]:
    """The live children of `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        argv = command_line(int(entry.name)) if ppid == pid else None
        if argv:
            found.append(ProcessRecord(name=_label(argv), pid=int(entry.name), cmdline=argv))
    return sorted(found, key=lambda record: record.pid)


def end_processes(records: list[ProcessRecord], *, grace: float = 15.0) -> list[ProcessRecord]:
    """SIGTERM the recorded processes still running, SIGKILL what outlives `grace`.

    Returns those that were running. Only pids still running their recorded command are
    signalled.
    """
    running = [record for record in records if record.alive()]
    for record in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(record.alive() for record in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for record in running:
        if record.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
    return running


# -- the state file ------------------------------------------------------------------------------


@dataclass
class SandboxState:
    """What a running sandbox tells the other `kapsa sandbox` commands."""

    directory: str
    status: str = "starting"  # starting | running | failed | stopping | stopped
    message: str = ""
    supervisor: ProcessRecord | None = None
    processes: list[ProcessRecord] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    kubeconfig: str = ""
    kubectl: str = "kubectl"
    ledger_url: str = ""
    project: str = ""
    namespace: str = ""
    base_domain: str = ""
    git_dir: str = ""
    repository: str = ""
    registry: str = ""
    log: str = ""
    node_netns: str = ""
    """The real node's network namespace, where the apps answer; empty when it is simulated."""

    @property
    def path(self) -> Path:
        return Path(self.directory) / STATE_FILE

    def save(self) -> None:
        """Atomically, and readable by its owner only: it names a registry login."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.path)

    @classmethod
    def load(cls, directory: Path) -> SandboxState | None:
        try:
            data: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        supervisor = data.pop("supervisor", None)
        processes = data.pop("processes", [])
        return cls(
            **data,
            supervisor=ProcessRecord(**supervisor) if supervisor else None,
            processes=[ProcessRecord(**record) for record in processes],
        )

    def running(self) -> bool:
        return self.supervisor is not None and self.supervisor.alive()


# -- what a Project looks like now ---------------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentView:
    name: str
    type: str
    branch: str
    phase: str
    commit: str | None
    url: str | None
    expires_at: str | None
    message: str


@dataclass(frozen=True)
class ProjectView:
    """A Project and its Environments, read in one go, for progress displays and the tour."""

    name: str
    phase: str
    message: str
    conditions: dict[str, JSON]
    environments: dict[str, EnvironmentView]

    def environment(self, name: str) -> EnvironmentView | None:
        return self.environments.get(name)


def observe(kube: Kube, project: str) -> ProjectView | None:
    obj = kube.get(PROJECT, project)
    if obj is None:
        return None
    status = obj.get("status") or {}
    namespace = status.get("namespace") or project
    items = kube.list(ENVIRONMENT, namespace=namespace).get("items", [])
    environments = {}
    for item in items:
        env_status = item.get("status") or {}
        environments[item["metadata"]["name"]] = EnvironmentView(
            name=item["metadata"]["name"],
            type=item["spec"].get("type", "standard"),
            branch=item["spec"].get("branch", ""),
            phase=env_status.get("phase", "Pending"),
            commit=env_status.get("commit"),
            url=env_status.get("url"),
            expires_at=env_status.get("expiresAt"),
            message=env_status.get("message") or "",
        )
    return ProjectView(
        name=project,
        phase=status.get("phase", "Pending"),
        message=status.get("message") or "",
        conditions={c["type"]: c for c in status.get("conditions", [])},
        environments=environments,
    )


#: How long kube-proxy may take to follow a Service's new Endpoints.
SETTLE_SECONDS = 10.0


def app_answer(kube: Kube, *, netns: str, namespace: str, environment: str) -> str:
    """What an environment's app answers at `/` through its Service, as a neighbour pod sees it.

    Asked again for a few seconds until the answer names the commit the environment runs:
    traffic follows the Endpoints Kapsa waited for once kube-proxy has caught up.
    """
    env = kube.get(ENVIRONMENT, environment, namespace=namespace) or {}
    commit = (env.get("status") or {}).get("commit")
    service = kube.get(SERVICE, environment, namespace=namespace)
    if service is None:
        raise SandboxError(f"environment {environment} has no Service yet")
    url = f"http://{service['spec']['clusterIP']}/"
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        try:
            said = NetworkNamespace(netns).fetch(url).strip()
            if not commit or f"commit: {commit}" in said or time.monotonic() > deadline:
                return said
        except KapsaError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def changes(before: ProjectView | None, after: ProjectView | None) -> Iterator[str]:
    """What moved between two views, in words, for a live progress display."""
    if after is None:
        return
    if before is None or before.phase != after.phase:
        was = f"{before.phase} -> " if before else ""
        message = f" ({after.message})" if after.message else ""
        yield f"Project {after.name}: {was}{after.phase}{message}"
    for name, env in sorted(after.environments.items()):
        old = before.environments.get(name) if before else None
        if old is None or old.phase != env.phase or old.commit != env.commit:
            was = f"{old.phase} -> " if old and old.phase != env.phase else ""
            commit = f" at {env.commit[:7]}" if env.commit else ""
            kind = "preview " if env.type == "preview" else ""
            yield f"{kind}Environment {name}: {was}{env.phase}{commit}"


# -- the whole stack -----------------------------------------------------------------------------


class Stack:
    """Control plane, git server with the sample repository, registry, SIMULATORS, operator.

    `start` brings everything up and applies the platform objects and the sample Project;
    `stop` ends it all, in reverse order. Everything runs under `workdir/run`, which `start`
    empties first: every sandbox starts from the same state the tour expects.
    """

    def __init__(self, workdir: Path, *, project: str = "hello") -> None:
        self.workdir = workdir
        self.run_dir = workdir / "run"
        self.project_name = project
        self.ledger_url = f"sqlite:///{self.run_dir / 'ledger.db'}"
        self.control_plane: ControlPlane | None = None
        self.git_server: GitServer | None = None
        self.registry_server: RegistryServer | None = None
        self.kube: Kube | None = None
        self.platform: Platform | None = None
        self.simulators: Simulators | None = None
        self.operator: OperatorProcess | None = None
        self.project: JSON | None = None

    def start(self, progress: Progress) -> None:
        try:
            self._start(progress)
        except BaseException:
            self.stop()
            raise

    def _start_sources(self, plane: ControlPlane, progress: Progress) -> list[str]:
        """The git server with the sample app and the registry, and what the operator needs
        to build on this node: returns its flags."""
        git = GitServer(self.run_dir / "git").start()
        self.git_server = git
        registry = RegistryServer(
            workdir=self.run_dir / "registry", username="kapsa", password=secrets.token_urlsafe(18)
        )
        registry.start()
        self.registry_server = registry
        operator_flags = ["--no-leader-elect"]
        base_image = None
        if plane.node is not None:
            assert git.port is not None
            plane.node.trust_registry(port=registry.port, tls=registry.tls)
            # Build pods share the node's network, where these ports answer as on the host.
            plane.node.expose(git.port)
            images = push_build_images(registry)
            base_image = images.base
            operator_flags += ["--builder-image", images.builder, "--build-host-network"]
        progress(f"registry: docker-registry at {registry.url} (htpasswd login)")
        commit = git.create_repo(self.project_name, files=sample_files(base_image=base_image))
        progress(
            f"git server: {git.url_for(self.project_name)} holds the sample app at {commit[:7]}: "
            "a Procfile, built with buildpacks"
            + (", and a Dockerfile for buildah (switch: docs/quickstart.md)" if base_image else "")
        )

        return operator_flags

    def _start(self, progress: Progress) -> None:
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)

        progress("control plane: looking for kube-apiserver, etcd and kubectl")
        assets = find_or_build_assets(progress=lambda line: progress(f"control plane: {line}"))
        no_node = why_no_node(assets)
        plane = ControlPlane(
            assets=assets,
            workdir=self.run_dir / "control-plane",
            node=no_node is None,
        )
        self.control_plane = plane
        plane.start()
        progress(f"control plane: etcd, kube-apiserver, kube-controller-manager at {plane.server}")
        if plane.node is not None:
            progress(
                "node: containerd, runc, kubelet, kube-proxy and kube-scheduler; pods run for real "
                f"(network namespace {plane.node.netns.name})"
            )
        else:
            progress(f"node: none on this machine ({no_node}); the kubelet is SIMULATED")
        install_crds(plane)
        progress("control plane: Kapsa's CRDs and the kpack and cert-manager kinds installed")
        self.kube = Kube.from_kubeconfig(str(plane.kubeconfig))

        operator_flags = self._start_sources(plane, progress)
        git, registry = self.git_server, self.registry_server
        assert git is not None and registry is not None

        self.simulators = start_simulators(
            self.kube,
            registry_server=registry,
            git_server=git,
            node=plane.node is not None,
            fail=CommitMessageFailPolicy(git),
        )
        progress(
            "SIMULATOR kpack: builds each Image's commit into a runnable image (busybox, the "
            "repository's files, its Procfile's web process) and pushes it to the registry; a "
            "commit whose message says BUILD-FAILS: <why> fails with <why>"
        )
        if self.simulators.kubelet is not None:
            progress("SIMULATOR kubelet: reports every Deployment's pods ready (no containers run)")
        progress("SIMULATOR cert-manager: marks every ClusterIssuer Ready")
        if plane.node is not None:
            progress(
                "Dockerfile builds: real, buildah in a Job on the node; the builder image is "
                "assembled from this machine's buildah and git, with busybox as a base for FROM "
                "(kapsa/busybox:1 in the registry)"
            )
        else:
            progress("Dockerfile builds: not without a node (their Jobs would never start)")

        self.operator = OperatorProcess(
            kubeconfig=plane.kubeconfig,
            ledger_url=self.ledger_url,
            workdir=self.run_dir,
            extra=operator_flags,
        ).start()
        progress(f"operator: kapsa operator running, ledger {self.ledger_url}")

        self.platform = apply_platform(plane, registry)
        self._wait(
            lambda: bool(
                ((self.kube_get(REGISTRY, self.platform_names.registry)) or {})
                .get("status", {})
                .get("verified")
            ),
            what=f"Registry {self.platform_names.registry} verified",
        )
        self._wait(
            lambda: _ready(self.kube_get(DOMAIN_POOL, self.platform_names.domain_pool)),
            what=f"DomainPool {self.platform_names.domain_pool} Ready",
        )
        progress(
            f"platform: Registry {self.platform_names.registry} verified, DomainPool "
            f"{self.platform_names.domain_pool} ({self.platform_names.base_domain}) Ready"
        )

        self.project = sample_project(
            git_url=git.url_for(self.project_name), platform=self.platform, name=self.project_name
        )
        plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(self.project))
        progress(f"Project {self.project['metadata']['name']} applied")

    @property
    def platform_names(self) -> Platform:
        if self.platform is None:
            raise SandboxError("the platform objects are not applied yet")
        return self.platform

    def kube_get(self, resource: ResourceType, name: str) -> JSON | None:
        if self.kube is None:
            raise SandboxError("the control plane is not running")
        return self.kube.get(resource, name)

    def _wait(self, predicate: Callable[[], bool], *, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.operator and self.operator.process and self.operator.process.poll() is not None:
                raise SandboxError(
                    f"the operator exited while waiting for {what}:\n{self.operator.tail()}"
                )
            if time.monotonic() > deadline:
                tail = self.operator.tail() if self.operator else ""
                raise SandboxError(f"{what}: not within {timeout:.0f}s; operator log:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Operator first (it must not see its world vanish), then the SIMULATORS and servers."""
        if self.operator is not None:
            self.operator.stop()
            self.operator = None
        if self.simulators is not None:
            self.simulators.stop()
            self.simulators = None
        if self.registry_server is not None:
            self.registry_server.stop()
            self.registry_server = None
        if self.git_server is not None:
            self.git_server.stop()
            self.git_server = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None


def _ready(obj: JSON | None) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in ((obj or {}).get("status") or {}).get("conditions", [])
    )
