"""Conditions as the API conventions want them: keyed by type, timestamps that mean something."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def set_condition(
    conditions: list[dict[str, Any]],
    *,
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; lastTransitionTime moves only when the status flips."""
    text = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = (
        previous.get("lastTransitionTime", now)
        if previous and previous.get("status") == text
        else now
    )
    entry: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != type_] + [entry]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for entry in (obj.get("status") or {}).get("conditions", []):
        if entry.get("type") == type_:
            return dict(entry)
    return None


def is_true(obj: dict[str, Any], type_: str, *, current_generation: bool = False) -> bool:
    """Whether the condition holds; with `current_generation`, only if computed from this spec."""
    found = condition(obj, type_)
    if found is None or found.get("status") != "True":
        return False
    if current_generation and "observedGeneration" in found:
        return bool(found["observedGeneration"] == obj["metadata"].get("generation"))
    return True


class StatusDraft:
    """The status a reconcile is putting together, starting from the one it read."""

    def __init__(self, obj: dict[str, Any], *, now: str) -> None:
        self.old: dict[str, Any] = dict(obj.get("status") or {})
        self.status: dict[str, Any] = dict(self.old)
        self.conditions: list[dict[str, Any]] = list(self.old.get("conditions", []))
        self.generation: int | None = obj["metadata"].get("generation")
        self.now = now
        self._after_write: list[Callable[[], None]] = []

    def after_write(self, effect: Callable[[], None]) -> None:
        """Run `effect` only once this status is stored (see `written`).

        For what must happen once per change: a metric counted or an Event sent by a pass that
        read a stale copy and then lost its write would otherwise happen again in the retry.
        """
        self._after_write.append(effect)

    def written(self) -> None:
        """The status is stored: the effects waiting for it happen now."""
        effects, self._after_write = self._after_write, []
        for effect in effects:
            effect()

    def condition(self, type_: str, ok: bool | None, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions,
            type_=type_,
            status=ok,
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.now,
        )

    def finish(self) -> dict[str, Any]:
        self.status["conditions"] = self.conditions
        self.status["observedGeneration"] = self.generation
        return self.status
