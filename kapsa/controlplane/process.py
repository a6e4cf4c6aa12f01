"""One server process of the control plane: started with its log in a file, stopped politely.

Every failure message names the log and quotes its tail, because the reason a kube-apiserver or
etcd refused to come up is only ever written there.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kapsa.errors import ControlPlaneError

TAIL_LINES = 30
_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child between fork and exec must not import or allocate.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Killed outright if the Python process dies without stopping us (SIGKILL, a crash).

    SIGKILL rather than SIGTERM: terminated all at once, an apiserver whose etcd is gone would
    hang on, holding its port, which is the leak this prevents.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A port free on 127.0.0.1 right now; the kernel picks it, so parallel runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A long-running child whose stdout and stderr go to `log`, appended across restarts."""

    def __init__(self, *, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self.running and self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            try:
                # A session of its own: Ctrl-C in the terminal must not kill etcd before the
                # apiserver, which would then hang in shutdown retrying its etcd connection.
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509
                )
            except OSError as exc:
                raise ControlPlaneError(f"cannot start {self.name}: {exc}") from exc

    def stop(self, *, timeout: float = 15.0) -> None:
        """Terminate, and kill only if it has not exited within `timeout` seconds."""
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, reason: str) -> ControlPlaneError:
        return ControlPlaneError(
            f"{self.name} {reason}; its log is {self.log}, ending with:\n{self.tail()}"
        )

    def wait_ready(
        self, probe: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
    ) -> None:
        """Poll `probe` until it holds; fail early, with the log, if the process dies meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise self.failure(f"exited before {what}")
            if probe():
                return
            if time.monotonic() > deadline:
                raise self.failure(f"was not {what} within {timeout:.0f}s")
            time.sleep(interval)
