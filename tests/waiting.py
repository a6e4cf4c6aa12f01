"""Waiting for a condition instead of sleeping: fast when the system is fast, patient when not."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "the condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns something truthy, and return that.

    Exceptions listed in `ignore` count as "not yet" (an object not created yet answers 404).
    On timeout the assertion names `message` (a callable is evaluated then, to describe the
    state at that moment), the last value returned and the last exception ignored.
    """
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if value:
                return value
            last_value = value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            detail = f"; last value {last_value!r}"
            if last_error is not None:
                detail += f"; last error {last_error!r}"
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)
