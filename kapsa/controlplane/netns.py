"""A network namespace of the run's own, and the loopback ports it shares with the host.

The node (containerd, the kubelet, kube-proxy, the pods' bridge and every iptables rule they
write) lives in a namespace made for it, so the host's links and tables are never touched and
teardown is complete. Two worlds must still meet: the kubelet and containerd reach the API
server and the registry on the host's loopback, and the API server reaches the kubelet for logs
and port-forwards. A `Relay` joins one loopback port across the boundary. It works because a
socket keeps the namespace it was created in: a thread that has entered the namespace creates
the socket there, and any thread may use it afterwards.
"""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from kapsa.errors import ControlPlaneError

_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)
NETNS_DIR = Path("/run/netns")
T = TypeVar("T")


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise ControlPlaneError(f"setns failed: {os.strerror(errno)}")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ControlPlaneError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


class NetworkNamespace:
    """A named namespace under /run/netns, as `ip netns` makes them."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        _ip("netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        if self.exists:
            _ip("netns", "delete", self.name)

    def ip(self, *args: str) -> None:
        """`ip ARGS` inside the namespace."""
        _ip("-n", self.name, *args)

    def pids(self) -> list[int]:
        """Every process whose network is this namespace (the node's daemons and shims)."""
        result = subprocess.run(
            ["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False
        )
        return [int(word) for word in result.stdout.split()]

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread inside the namespace, as a pod's neighbour.

        Only this thread moves: sockets it opens meanwhile are the namespace's for good.
        """
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def fetch(self, url: str, *, timeout: float = 5.0) -> str:
        """GET `url` from inside the namespace, where pod and Service addresses answer.

        What a neighbour pod would see; an error says so, with the status or the reason.
        """
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get() -> str:
            with opener.open(url, timeout=timeout) as response:
                return str(response.read().decode(errors="replace"))

        try:
            return self.call(get)
        except urllib.error.HTTPError as error:
            raise ControlPlaneError(f"GET {url}: {error.code} {error.reason}") from error
        except OSError as error:
            raise ControlPlaneError(f"GET {url}: {error}") from error

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()` on a short-lived thread inside the namespace, leaving this thread where it is."""
        box: dict[str, T | BaseException] = {}

        def run() -> None:
            try:
                with self.entered():
                    box["value"] = fn()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        thread = threading.Thread(target=run, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]


def _listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    return sock


class Relay:
    """One TCP port joined across the namespace boundary, in either direction.

    `into=True` makes a host loopback port (the API server's, the registry's) answer at the same
    number inside the namespace, on `listen_host` there; `into=False` makes a port inside the
    namespace (the kubelet's) answer on the host's loopback. Bytes are copied as they come;
    TLS passes through untouched, so certificates for 127.0.0.1 stay valid on both sides.
    """

    def __init__(
        self, *, netns: NetworkNamespace, port: int, into: bool, listen_host: str = "127.0.0.1"
    ) -> None:
        self.netns = netns
        self.port = port
        self.into = into
        self.listen_host = listen_host
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        if self.into:
            self._listener = self.netns.call(lambda: _listener(self.listen_host, self.port))
        else:
            self._listener = _listener(self.listen_host, self.port)
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def _connect(self) -> socket.socket:
        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", self.port), timeout=10)

        return connect() if self.into else self.netns.call(connect)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = self._connect()
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector, client, upstream:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            open_ends = 2
            while open_ends and not self._stopped.is_set():
                for key, _ in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                    except OSError:
                        return
                    if not data:
                        selector.unregister(source)
                        with suppress(OSError):
                            peers[source].shutdown(socket.SHUT_WR)
                        open_ends -= 1
                        continue
                    try:
                        peers[source].sendall(data)
                    except OSError:
                        return
