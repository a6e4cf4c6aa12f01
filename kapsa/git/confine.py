"""git runs where it cannot open the operator's files: Landlock-confined threads.

git is the one program in the operator's container that talks to hosts users choose, so it is the
one a hostile remote would try to turn. It already gets an environment built from nothing
(kapsa.git.credentials); this keeps the files away too. The Kubernetes API token
(`/var/run/secrets/kubernetes.io/serviceaccount`), the ledger's data and anything else mounted in
the container are outside what git may open, while the programs and libraries it runs, `/etc`
(CA certificates, resolver), `/dev`, the temporary directory and the repository cache stay open.

Landlock (Linux 5.13 and later) restricts a thread and everything it starts, needs no privilege
and no capability, and cannot be undone by the restricted thread. The operator keeps its own
threads unrestricted (they read the token for every API call) and starts git only from threads of
a pool that restricted themselves when they started (`GitRunner`). Where Landlock is not available
(a kernel before 5.13, or a seccomp profile refusing its calls) git runs unconfined, and the
operator says so in its log at startup.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from kapsa.errors import KapsaError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# The system call numbers are the same on every architecture Linux added them to (5.13).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (include/uapi/linux/landlock.h), by the ABI version that introduced them.
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
_ABI_1 = (1 << 13) - 1
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_DEVICES = _READ | _WRITE_FILE | _TRUNCATE
_ANYTHING = _ABI_1 | _REFER | _TRUNCATE

#: What git, its remote helpers, curl and ssh read: programs, libraries, CA certificates, the
#: resolver's files, passwd (ssh looks up the user).
SYSTEM_READABLE = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


class ConfinementError(KapsaError):
    """The kernel refused a Landlock call it claims to support."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),)


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


_libc = ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: object) -> int:
    result = int(_libc.syscall(number, *args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it has none (or it is disabled)."""
    if platform.system() != "Linux":
        return 0
    try:
        return _syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError as error:
        # ENOSYS: older kernel; EOPNOTSUPP: built in, not enabled at boot; EPERM: a seccomp
        # profile that does not know the call.
        if error.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            return 0
        raise


@dataclass(frozen=True, kw_only=True)
class Confinement:
    """Directories a confined thread may still use; everything else it cannot open."""

    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()

    @classmethod
    def for_git(cls, *, cache: Path) -> Confinement:
        """What git needs: the system, the temporary directory (its HOME and credential files
        live there for one command) and the repository cache."""
        resolver = Path(os.path.realpath("/etc/resolv.conf")).parent
        return cls(
            readable=(*(Path(p) for p in SYSTEM_READABLE), resolver),
            writable=(Path("/dev"), Path(tempfile.gettempdir()), cache),
        )

    def apply(self, abi: int) -> None:
        """Restrict the calling thread, and all it starts, to these directories: for good."""
        handled = _ABI_1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
        attr = _RulesetAttr(handled_access_fs=handled)
        ruleset = _syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
        for path in self.writable:
            # A rule needs its directory to exist, and a confined thread could not create it.
            path.mkdir(parents=True, exist_ok=True)
        try:
            for path, access in self._rules():
                self._allow(ruleset, path, access & handled)
            # Landlock demands no_new_privs (or CAP_SYS_ADMIN) of the thread it restricts.
            if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            _syscall(_RESTRICT_SELF, ruleset, 0)
        except OSError as error:
            raise ConfinementError(f"Landlock refused to confine git's thread: {error}") from error
        finally:
            os.close(ruleset)

    def _rules(self) -> list[tuple[Path, int]]:
        rules = [(path, _READ) for path in self.readable]
        for path in self.writable:
            rules.append((path, _DEVICES if path == Path("/dev") else _ANYTHING))
        return rules

    @staticmethod
    def _allow(ruleset: int, path: Path, access: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
        except FileNotFoundError:
            return  # /lib32 and the like exist on some images only
        try:
            rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
            _syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0)
        finally:
            os.close(fd)


class GitRunner:
    """Calls the functions that start git: in the caller's thread, or in confined threads.

    Unconfined (the default) is for the command line and tests of git itself; the operator
    passes a Confinement. Calls block the caller as a direct call would; the pool is sized for
    every poll and reconcile thread of the operator to have a git call running at once.
    """

    def __init__(self, confinement: Confinement | None = None, *, threads: int = 16) -> None:
        self.confinement = confinement
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._threads = threads
        self._abi = 0

    @property
    def confined(self) -> bool:
        """Whether git really runs confined (asked for, and the kernel can)."""
        self._ensure_pool()
        return self._pool is not None

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        pool = self._ensure_pool()
        if pool is None:
            return fn(*args, **kwargs)
        return pool.submit(fn, *args, **kwargs).result()

    def start(self) -> None:
        """Confine the pool's threads now, so a kernel that refuses says so at startup."""
        if self.confined:
            self(_nothing)
            log.info("git runs in Landlock-confined threads (ABI %d)", self._abi)

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_pool(self) -> ThreadPoolExecutor | None:
        with self._lock:
            if self._pool is not None or self.confinement is None:
                return self._pool
            self._abi = landlock_abi()
            if self._abi == 0:
                log.warning(
                    "Landlock is not available (kernel older than 5.13, not enabled at boot, "
                    "or refused by the container's seccomp profile): git runs unconfined and "
                    "could open any file the operator can, the API token included"
                )
                self.confinement = None
                return None
            confinement = self.confinement
            abi = self._abi
            self._pool = ThreadPoolExecutor(
                max_workers=self._threads,
                thread_name_prefix="git-confined",
                initializer=lambda: confinement.apply(abi),
            )
            return self._pool


def _nothing() -> None:
    return None
