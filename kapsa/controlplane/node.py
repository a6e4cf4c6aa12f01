"""One real node beside the control plane: containerd, runc, a CNI bridge, kubelet, kube-proxy.

Pods really start, pull their images with the credentials in their pull secrets, pass or fail
the kubelet's probes and receive their Secrets, so "Running" means the app answers. Everything
the node writes to the network (the bridge, the pods' links, kube-proxy's and the kubelet's
iptables rules) stays inside a network namespace made for the run, and every mount (the pods'
root filesystems, their Secret volumes) inside a mount namespace held by one process: stopping
the node, or a crash and the next run's sweep, removes all of it. The recipe and its one trap
(`restrict_oom_score_adj`) are described in docs/test-ground.md.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

from kapsa.controlplane.assets import Assets
from kapsa.controlplane.images import pause_image
from kapsa.controlplane.netns import NetworkNamespace, Relay
from kapsa.controlplane.process import ServerProcess, free_port
from kapsa.errors import ControlPlaneError

NODE_NAME = "localhost"
"""The node's name, and so the address the API server dials for logs and port-forwards."""
POD_CIDR = "10.244.0.0/16"
POD_SUBNET = "10.244.0.0/24"
NODE_IP = "10.250.0.1"
"""The node's own address, on a link inside its namespace (a veth pair whose both ends stay
there): never a host address."""
SANDBOX_IMAGE = "kapsa.local/pause:3.2"
#: Each run records itself here, so the next run can sweep what a crashed one left behind.
RUNS = Path("/run/kapsa/nodes")
READY_TIMEOUT = 90.0
DEBIAN_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "conntrack")
CNI_BIN = Path("/usr/lib/cni")


class NodeUnavailableError(ControlPlaneError):
    """This machine cannot run a node (not root, no cgroups, a part missing); the reason says."""


def why_no_node(assets: Assets) -> str | None:
    """None when a node can run here, else what stands in the way, in a user's words."""
    if os.geteuid() != 0:
        return "a node needs root (network and mount namespaces, cgroups)"
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        return "no cgroups mounted at /sys/fs/cgroup"
    if not assets.can_run_node:
        return "the node's binaries (kubelet, kube-scheduler, kube-proxy, pause) were not built"
    for tool in ("containerd", "runc", "ip", "nsenter", "iptables", "ctr"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: {' '.join(DEBIAN_PACKAGES)})"
    if not (CNI_BIN / "bridge").exists():
        return f"no CNI bridge plugin in {CNI_BIN} (Debian: containernetworking-plugins)"
    return None


@dataclass(frozen=True)
class _Record:
    """What a run leaves in RUNS: enough for a later run to undo it if this one dies."""

    owner: int
    netns: str
    workdir: str

    @property
    def rundir(self) -> Path:
        """Sockets and runtime state: a short path, since a unix socket's is limited to 107."""
        return RUNS / self.netns

    @property
    def runc_root(self) -> Path:
        return self.rundir / "runc"


def _kill_containers(runc_root: Path) -> None:
    """Kill and delete every container runc started under `runc_root`, and nothing else."""
    if not runc_root.is_dir():
        return
    listed = subprocess.run(
        ["runc", "--root", str(runc_root), "list", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    for container in listed.stdout.split():
        subprocess.run(
            ["runc", "--root", str(runc_root), "kill", "-a", container, "KILL"],
            capture_output=True,
            check=False,
        )
        subprocess.run(
            ["runc", "--root", str(runc_root), "delete", "--force", container],
            capture_output=True,
            check=False,
        )


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _undo(record: _Record) -> None:
    _kill_containers(record.runc_root)
    netns = NetworkNamespace(record.netns)
    if netns.exists:
        _kill(netns.pids())
        time.sleep(0.2)
        netns.delete()
    shutil.rmtree(record.rundir, ignore_errors=True)
    shutil.rmtree(Path(record.workdir) / "containerd", ignore_errors=True)


def sweep_stale_runs() -> list[str]:
    """Undo every node whose run died without stopping it; return their namespaces' names."""
    swept = []
    for path in sorted(RUNS.glob("*.json")) if RUNS.is_dir() else []:
        record = _Record(**json.loads(path.read_text()))
        try:
            os.kill(record.owner, 0)
            continue  # that run is alive
        except ProcessLookupError:
            pass
        _undo(record)
        path.unlink(missing_ok=True)
        swept.append(record.netns)
    return swept


class Node:
    """The node; started by the ControlPlane after its controller manager, stopped before it."""

    def __init__(self, *, assets: Assets, workdir: Path, kubeconfig: Path, apiserver_port: int):
        reason = why_no_node(assets)
        if reason:
            raise NodeUnavailableError(reason)
        self.assets = assets
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.apiserver_port = apiserver_port
        self.netns = NetworkNamespace(f"kapsa-{secrets.token_hex(4)}")
        self._record = _Record(owner=os.getpid(), netns=self.netns.name, workdir=str(workdir))
        self._relays: dict[int, Relay] = {}
        self._processes: list[ServerProcess] = []
        self._holder: ServerProcess | None = None
        self.kubelet_port = free_port()

    # -- what callers use ----------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self._record.rundir / "containerd.sock"

    @property
    def registry_hosts(self) -> Path:
        """containerd's per-registry settings, read on every pull (`config_path`)."""
        return self.workdir / "registry-hosts"

    def trust_registry(self, *, port: int, tls: bool, ca: Path | None = None) -> None:
        """Let the node pull from the registry on the host's loopback port `port`.

        Credentials are not configured here: as on any cluster they come from the pods' pull
        secrets. Plain HTTP is allowed for this one registry only, as an admin would.
        """
        host = f"127.0.0.1:{port}"
        folder = self.registry_hosts / host
        folder.mkdir(parents=True, exist_ok=True)
        scheme = "https" if tls else "http"
        lines = [f'server = "{scheme}://{host}"', f'[host."{scheme}://{host}"]']
        lines.append('  capabilities = ["pull", "resolve"]')
        if ca is not None:
            lines.append(f'  ca = "{ca}"')
        (folder / "hosts.toml").write_text("\n".join(lines) + "\n")
        self.expose(port)

    def pull_credentials(self, *, server: str, username: str, password: str) -> None:
        """Credentials the kubelet pulls from `server` with for every pod, as a node of a real
        cluster holds for its platform's own images: the docker config in its root dir.

        `server` may carry a path (`host:port/kapsa/builder`): the kubelet then uses them only
        for images below it.
        """
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        path = self._record.rundir / "kubelet" / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": {server: {"auth": auth}}}))
        path.chmod(0o600)

    def expose(self, port: int) -> None:
        """Make a host loopback port answer at the same number inside the node's namespace."""
        if port not in self._relays:
            relay = Relay(netns=self.netns, port=port, into=True)
            relay.start()
            self._relays[port] = relay

    # -- starting and stopping -----------------------------------------------------------------

    def start(self) -> None:
        sweep_stale_runs()
        RUNS.mkdir(parents=True, exist_ok=True)
        (RUNS / f"{self.netns.name}.json").write_text(json.dumps(self._record.__dict__))
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._make_network()
            self.expose(self.apiserver_port)
            self._start_holder()
            self._start_containerd()
            self._import_pause_image()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_scheduler()
            self._wait_node_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kubelet first (it would restart what is killed), then every container, then the rest."""
        for process in self._processes:
            if process.name == "kubelet":
                process.stop(timeout=5)
        _kill_containers(self._record.runc_root)
        while self._processes:
            self._processes.pop().stop(timeout=5)
        for relay in self._relays.values():
            relay.stop()
        self._relays.clear()
        _undo(self._record)
        (RUNS / f"{self.netns.name}.json").unlink(missing_ok=True)

    # -- the parts -----------------------------------------------------------------------------

    def _make_network(self) -> None:
        self.netns.create()
        # The node's address, and a default route so Service addresses route before kube-proxy's
        # rules rewrite them; nothing leaves the namespace (no link leads out of it).
        self.netns.ip("link", "add", "kapsa0", "type", "veth", "peer", "name", "kapsa1")
        self.netns.ip("addr", "add", f"{NODE_IP}/32", "dev", "kapsa0")
        self.netns.ip("link", "set", "kapsa1", "up")
        self.netns.ip("link", "set", "kapsa0", "up")
        self.netns.ip("route", "add", "default", "dev", "kapsa0")
        cni = self.workdir / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "kapsa",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.workdir / "cni-ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )

    def _spawn(self, *, name: str, argv: list[str], inside: bool = True) -> ServerProcess:
        if inside:
            assert self._holder is not None and self._holder.pid is not None
            argv = ["nsenter", "-t", str(self._holder.pid), "-m", "-n", *argv]
        process = ServerProcess(name=name, argv=argv, log=self.workdir / "logs" / f"{name}.log")
        self._processes.append(process)
        process.start()
        return process

    def _start_holder(self) -> None:
        """One process owning the node's mount namespace; the daemons join it and its network.

        A mount namespace of its own, so containerd and the kubelet share one view of the pods'
        mounts and none reaches the host. Not `ip netns exec`, which remounts /sys and so hides
        the cgroup hierarchies the kubelet needs.
        """
        self._holder = ServerProcess(
            name="node-namespaces",
            argv=[
                "nsenter",
                f"--net={self.netns.path}",
                "unshare",
                "--mount",
                "--propagation=slave",
                "sleep",
                "infinity",
            ],
            log=self.workdir / "logs" / "node-namespaces.log",
        )
        self._processes.append(self._holder)
        self._holder.start()
        holder_pid = self._holder.pid
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{holder_pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            if time.monotonic() > deadline:
                raise self._holder.failure("did not enter the node's namespaces")
            time.sleep(0.02)
        # The kubelet writes container logs to this fixed folder: keep them off the host.
        for folder in ("/var/log/pods", "/var/log/containers"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["nsenter", "-t", str(holder_pid), "-m", "mount", "-t", "tmpfs", "kapsa", folder],
                check=True,
                capture_output=True,
            )

    def _start_containerd(self) -> None:
        root = self.workdir / "containerd"
        root.mkdir(exist_ok=True)
        self._record.rundir.mkdir(parents=True, exist_ok=True)
        self.registry_hosts.mkdir(exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{root / "root"}"
state = "{self._record.rundir / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[{cri}]
  # Required here: this machine refuses to lower a process's oom_score_adj, which runc is
  # otherwise asked to do for every pod sandbox ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  sandbox_image = "{SANDBOX_IMAGE}"
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{self._record.runc_root}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.workdir / "cni"}"
  [{cri}.registry]
    config_path = "{self.registry_hosts}"
"""
        (self.workdir / "containerd.toml").write_text(config)
        containerd = self._spawn(
            name="containerd",
            argv=["containerd", "--config", str(self.workdir / "containerd.toml")],
        )
        containerd.wait_ready(self.containerd_socket.exists, timeout=30, what="listening")

    def _ctr(self, *args: str, input: bytes | None = None) -> None:
        result = subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args],
            input=input,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise ControlPlaneError(f"ctr {' '.join(args)} failed: {result.stderr.decode()}")

    def _import_pause_image(self) -> None:
        assert self.assets.pause is not None
        archive = pause_image(self.assets.pause).archive(name=SANDBOX_IMAGE)
        self._ctr("images", "import", "-", input=archive)

    def _start_kubelet(self) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # Only the API server, through its loopback relay, can reach this port.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "5s",
            "podCIDR": POD_SUBNET,
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        assert self.assets.kubelet is not None
        self._spawn(
            name="kubelet",
            argv=[
                str(self.assets.kubelet),
                f"--config={path}",
                f"--kubeconfig={self.kubeconfig}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.containerd_socket}",
                f"--root-dir={self._record.rundir / 'kubelet'}",  # its sockets need a short path
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        # The API server dials localhost:<port> (the node's name) for logs and port-forwards.
        relay = Relay(netns=self.netns, port=self.kubelet_port, into=False)
        relay.start()
        self._relays[-self.kubelet_port] = relay

    def _start_kube_proxy(self) -> None:
        assert self.assets.kube_proxy is not None
        self._spawn(
            name="kube-proxy",
            argv=[
                str(self.assets.kube_proxy),
                f"--kubeconfig={self.kubeconfig}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                f"--hostname-override={NODE_NAME}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                f"--healthz-bind-address=127.0.0.1:{free_port()}",
                "--conntrack-max-per-core=0",
            ],
        )

    def _start_scheduler(self) -> None:
        assert self.assets.kube_scheduler is not None
        self._spawn(
            name="kube-scheduler",
            argv=[
                str(self.assets.kube_scheduler),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--port=0",
            ],
            inside=False,
        )

    def _wait_node_ready(self) -> None:
        kubelet = next(p for p in self._processes if p.name == "kubelet")
        kubectl = self.assets.kubectl
        assert kubectl is not None

        def ready() -> bool:
            result = subprocess.run(
                [
                    str(kubectl),
                    f"--kubeconfig={self.kubeconfig}",
                    "get",
                    "node",
                    NODE_NAME,
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return result.stdout.strip() == "True"

        kubelet.wait_ready(ready, timeout=READY_TIMEOUT, what="Ready", interval=0.5)
