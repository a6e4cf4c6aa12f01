"""A work queue of keys, like client-go's: a key is processed by one worker at a time.

Events for a key that is being processed mark it dirty, and it is processed once more when the
worker finishes, so no event is lost and no key runs twice at once. Delayed adds (requeue after a
deadline) share the same de-duplication.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[Hashable] = []
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._counter = 0
        self._closed = False

    def add(self, key: Hashable) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty.add(key)
                return
            if key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: Hashable, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        with self._cond:
            self._counter += 1
            heapq.heappush(self._delayed, (time.monotonic() + seconds, self._counter, key))
            self._cond.notify()

    def get(self, timeout: float = 1.0) -> Hashable | None:
        """The next key to process, or None on timeout or close; pair with `done`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                self._promote_due()
                if self._queue:
                    key = self._queue.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                wait = deadline - time.monotonic()
                if self._delayed:
                    wait = min(wait, self._delayed[0][0] - time.monotonic())
                if deadline - time.monotonic() <= 0:
                    return None
                self._cond.wait(max(wait, 0.01))
            return None

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._queue.append(key)
                    self._cond.notify()

    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
