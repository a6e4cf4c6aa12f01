"""Who may list a repository right now: a bounded, per-host-fair share of the poll threads.

Polls run on one pool of threads, and a listing holds its thread until the remote answers or the
git deadline passes. Without a gate, thirty slow remotes hold every thread and no other Project
is polled. So a listing first takes a slot: at most `per_host` at a time for one host, and a
host whose last listing was slow (or timed out) only gets one of the few `slow_slots` shared by
all slow hosts. A poll that finds no free slot is skipped, not queued: it costs no thread, and
the Project's next interval tries again. A host leaves the slow lane with its first fast
listing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class PollGate:
    def __init__(
        self,
        *,
        per_host: int = 2,
        slow_slots: int = 2,
        slow_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_host = per_host
        self.slow_slots = slow_slots
        self.slow_after = slow_after
        self._clock = clock
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}
        self._slow: set[str] = set()
        self._slow_busy = 0

    def is_slow(self, host: str) -> bool:
        with self._lock:
            return host in self._slow

    @contextmanager
    def slot(self, host: str) -> Iterator[bool]:
        """Yields True with a slot held for the listing, False when the poll should be skipped.

        A listing that takes `slow_after` or longer (a timeout does) puts its host in the slow
        lane; a quicker one, failed or not, takes it out.
        """
        with self._lock:
            slow = host in self._slow
            if self._busy.get(host, 0) >= self.per_host or (
                slow and self._slow_busy >= self.slow_slots
            ):
                taken = False
            else:
                taken = True
                self._busy[host] = self._busy.get(host, 0) + 1
                self._slow_busy += slow
        if not taken:
            yield False
            return
        started = self._clock()
        try:
            yield True
        finally:
            took = self._clock() - started
            with self._lock:
                self._busy[host] -= 1
                if not self._busy[host]:
                    del self._busy[host]
                self._slow_busy -= slow
                if took >= self.slow_after:
                    self._slow.add(host)
                else:
                    self._slow.discard(host)
