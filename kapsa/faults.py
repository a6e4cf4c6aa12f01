"""Failpoints: the fault suite kills the operator at exact places to prove nothing is lost.

`KAPSA_FAILPOINT=<name>:<n>` makes the process exit abruptly (as kill -9 would: no clean-up,
no flush) the n-th time it passes `<name>`. Unset, a failpoint costs one dictionary lookup.
The names mark the steps of recording a transition, where a crash is most delicate:
`before-status`, `after-status` (status written, ledger not yet) and `after-ledger`.
"""

from __future__ import annotations

import os
import threading

_ENV = "KAPSA_FAILPOINT"
_lock = threading.Lock()
_passes: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get(_ENV)
    if not spec:
        return None
    name, _, count = spec.partition(":")
    return name, int(count or "1")


def failpoint(name: str) -> None:
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    with _lock:
        _passes[name] = _passes.get(name, 0) + 1
        if _passes[name] >= armed[1]:
            os._exit(137)
