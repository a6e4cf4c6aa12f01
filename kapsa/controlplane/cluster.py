"""A real kube-apiserver with etcd and kube-controller-manager on loopback, and a real node.

With a node (the default where the machine allows one) every controller runs, so Deployments,
ReplicaSets, Jobs and ServiceAccount tokens are real, and pods start on the node
(kapsa.controlplane.node). Without one, only the garbage collector and the namespace controller
run, and readiness of Deployments is left to a simulator: that is what `bench/scale.py` uses,
where thousands of pods cannot run on two cores. Everything listens on 127.0.0.1, on ports the
kernel hands out.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import shutil
import ssl
import subprocess
from functools import cache
from pathlib import Path

import yaml

from kapsa.controlplane.assets import Assets
from kapsa.controlplane.node import Node
from kapsa.controlplane.process import ServerProcess, free_port
from kapsa.errors import ControlPlaneError
from kapsa.lifecycle import Service

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
#: A terminated apiserver waits for open watches (the controller manager's among them) to end,
#: which takes minutes; past this grace it is killed, which ends them as a crash would.
RESTART_GRACE = 2.0
PROBE_TIMEOUT = 2.0


@cache
def _accepts_flag(binary: Path, flag: str) -> bool:
    """Whether `binary --help` lists `flag`: the insecure ports exist in 1.20, not in 1.24+."""
    result = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, check=False, timeout=30
    )
    return f"{flag} " in result.stdout + result.stderr


def _loopback_tls() -> ssl.SSLContext:
    """For readiness probes only: the components' serving certificates are self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(
    *, port: int, path: str, tls: bool, body: dict[str, object] | None = None
) -> tuple[bool, bytes]:
    conn: http.client.HTTPConnection
    if tls:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=PROBE_TIMEOUT, context=_loopback_tls()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request(
                "POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"}
            )
        response = conn.getresponse()
        return response.status == 200, response.read()
    except (OSError, http.client.HTTPException):
        return False, b""
    finally:
        conn.close()


class ControlPlane(Service):
    """etcd, kube-apiserver and kube-controller-manager in `workdir`, admin by bearer token.

    Use as a context manager, or call `start()` and `stop()`. The kubeconfig it writes works for
    kubectl and for the `kubernetes` client alike.
    """

    def __init__(
        self,
        *,
        assets: Assets,
        workdir: Path,
        node: bool = False,
        controllers_off: tuple[str, ...] = (),
    ) -> None:
        """`controllers_off` names controllers of the manager to leave to a SIMULATOR."""
        self.assets = assets
        self.workdir = workdir
        self.with_node = node
        self.controllers_off = controllers_off
        self.node: Node | None = None
        self._token = secrets.token_hex(32)
        self._etcd_port = 0
        self._apiserver_port = 0
        self._processes: list[ServerProcess] = []
        self._etcd: ServerProcess | None = None
        self._apiserver: ServerProcess | None = None

    # -- what callers use ----------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        if not self._apiserver_port:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def token(self) -> str:
        return self._token

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def start(self) -> None:
        if self._processes:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self._etcd_port = free_port()
        self._apiserver_port = free_port()
        try:
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            self._start_controller_manager()
            if self.with_node:
                self.node = Node(
                    assets=self.assets,
                    workdir=self.workdir / "node",
                    kubeconfig=self.kubeconfig,
                    apiserver_port=self._apiserver_port,
                )
                self.node.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse order, waiting for each: an apiserver without etcd hangs in shutdown."""
        if self.node is not None:
            self.node.stop()
            self.node = None
        while self._processes:
            self._processes.pop().stop(timeout=STOP_TIMEOUT)
        self._etcd = self._apiserver = None

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver alone, same port, same etcd: clients must reconnect."""
        if self._apiserver is None:
            raise ControlPlaneError("the control plane has not been started")
        self._apiserver.stop(timeout=RESTART_GRACE)
        self._apiserver.start()
        self._wait_apiserver_ready(self._apiserver)

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision and return it.

        Reads and watches that reach etcd with an older resourceVersion then fail with 410 Gone.
        Watches served from the apiserver's watch cache see 410 once their resourceVersion leaves
        the cache's window, which `restart_apiserver` does at once.
        """
        if self._etcd is None:
            raise ControlPlaneError("the control plane has not been started")
        # The key is irrelevant: every response header carries the store's current revision.
        ok, raw = _http_ok(
            port=self._etcd_port,
            path="/v3/kv/range",
            tls=False,
            body={"key": base64.b64encode(b"/").decode(), "limit": 1},
        )
        if not ok:
            raise self._etcd.failure("did not answer a range request")
        revision = int(json.loads(raw)["header"]["revision"])
        ok, raw = _http_ok(
            port=self._etcd_port,
            path="/v3/kv/compaction",
            tls=False,
            body={"revision": str(revision), "physical": True},
        )
        if not ok:
            raise self._etcd.failure(f"refused compaction at {revision}: {raw[:500]!r}")
        return revision

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane, with a discovery cache of its own."""
        binary = self.assets.kubectl or shutil.which("kubectl")
        if binary is None:
            raise ControlPlaneError("no kubectl: none was built and none is on PATH")
        argv = [
            str(binary),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    # -- starting the parts --------------------------------------------------------------------

    def _write_credentials(self) -> None:
        (self.workdir / "tokens.csv").write_text(f"{self._token},admin,admin,system:masters\n")
        key, pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        if key.exists() and pub.exists():
            return
        for argv in (
            ["openssl", "genrsa", "-out", str(key), "2048"],
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
        ):
            try:
                result = subprocess.run(argv, capture_output=True, text=True, check=False)
            except OSError as exc:
                raise ControlPlaneError(
                    f"cannot run openssl for the service-account keys: {exc}"
                ) from exc
            if result.returncode != 0:
                raise ControlPlaneError(f"{' '.join(argv)} failed:\n{result.stderr}")

    def _spawn(self, *, name: str, argv: list[str]) -> ServerProcess:
        process = ServerProcess(name=name, argv=argv, log=self.logs / f"{name}.log")
        self._processes.append(process)
        process.start()
        return process

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{free_port()}"
        client = f"http://127.0.0.1:{self._etcd_port}"
        etcd = self._spawn(
            name="etcd",
            argv=[
                str(self.assets.etcd),
                "--name=kapsa",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=kapsa={peer}",
            ],
        )
        self._etcd = etcd
        etcd.wait_ready(
            lambda: _http_ok(port=self._etcd_port, path="/health", tls=False)[0],
            timeout=START_TIMEOUT,
            what="healthy",
        )

    def _start_apiserver(self) -> None:
        binary = self.assets.kube_apiserver
        argv = [
            str(binary),
            f"--etcd-servers=http://127.0.0.1:{self._etcd_port}",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--secure-port={self._apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/16",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            "--allow-privileged=true",
            # The `kubernetes` Endpoints may not name a loopback address: skip its endless retries.
            "--endpoint-reconciler-type=none",
            # The node is named `localhost`; its kubelet answers there through a loopback relay.
            "--kubelet-preferred-address-types=Hostname",
        ]
        if not self.with_node:
            # No token controller runs, so fresh namespaces have no `default` service account;
            # without this, creating a Pod there would be refused.
            argv.append("--disable-admission-plugins=ServiceAccount")
        if _accepts_flag(binary, "--insecure-port"):
            argv.append("--insecure-port=0")
        self._apiserver = self._spawn(name="kube-apiserver", argv=argv)
        self._wait_apiserver_ready(self._apiserver)

    def _wait_apiserver_ready(self, apiserver: ServerProcess) -> None:
        apiserver.wait_ready(
            lambda: _http_ok(port=self._apiserver_port, path="/readyz", tls=True)[0],
            timeout=START_TIMEOUT,
            what="ready (/readyz)",
        )

    def _write_kubeconfig(self) -> None:
        # The apiserver writes its self-signed certificate and CA into one file on first start.
        ca = (self.workdir / "certs" / "apiserver.crt").read_bytes()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kapsa",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": base64.b64encode(ca).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self._token}}],
            "contexts": [{"name": "kapsa", "context": {"cluster": "kapsa", "user": "admin"}}],
            "current-context": "kapsa",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _controllers(self) -> str:
        if not self.with_node:
            return "garbagecollector,namespace"
        return ",".join(["*", *(f"-{name}" for name in self.controllers_off)])

    def _start_controller_manager(self) -> None:
        binary = self.assets.kube_controller_manager
        if binary is None:
            return
        port = free_port()
        argv = [
            str(binary),
            f"--kubeconfig={self.kubeconfig}",
            "--controllers=" + self._controllers(),
            "--leader-elect=false",
            f"--service-account-private-key-file={self.workdir / 'sa.key'}",
            f"--root-ca-file={self.workdir / 'certs' / 'apiserver.crt'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'certs-controller-manager'}",
        ]
        if _accepts_flag(binary, "--port"):
            argv.append("--port=0")  # the insecure port of <= 1.23 listens on every interface
        kcm = self._spawn(name="kube-controller-manager", argv=argv)
        kcm.wait_ready(
            lambda: _http_ok(port=port, path="/healthz", tls=True)[0],
            timeout=START_TIMEOUT,
            what="healthy (/healthz)",
        )
