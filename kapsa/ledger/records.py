"""What the ledger stores and answers, as plain values.

They live apart from the database code so that every reader (the CLI, the HTTP server, a test)
gets the same shape and the same JSON, without touching SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """UTC, with a `Z`: one spelling for every timestamp a script reads back."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Entry:
    """One transition of a Project or an Environment, as the reconciler decided it.

    `(uid, seq)` names the transition: the reconciler may retry a step, and the key lets the
    ledger keep the first write and ignore the repeats. `project` is the owning Project's name
    (the Project's own name for kind "Project"), so one query covers a project's environments.
    """

    at: datetime
    kind: str
    namespace: str | None
    name: str
    project: str
    uid: str
    seq: int
    from_state: str
    to_state: str
    trigger: str
    reason: str
    message: str
    commit: str | None = None
    image: str | None = None
    generation: int | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the CLI's `-o json` and the HTTP server answer with this."""
        data = asdict(self)
        data["at"] = iso(self.at)
        return data


@dataclass(frozen=True)
class Deployment:
    """An image that ran in an environment, from when it became Running until it was replaced.

    `ended` is None while it still runs. `ready` says whether it was serving ready when the span
    ended (or now, for the current one): a Running -> Failed transition turns it False, a return
    to Running turns it True again. `entry` is the transition that put it there.

    `release` numbers the spans of one environment 1, 2, 3... oldest first. It is the one
    numbering users see (`kapsa history --deployments`) and give back (`kapsa diff-releases`,
    `kapsa rollback --release/--steps`), so every command counts releases the same way.
    """

    release: int
    commit: str | None
    image: str | None
    started: datetime
    ended: datetime | None
    ready: bool
    entry: Entry

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the transition that started it nested under `entry`."""
        return {
            "release": self.release,
            "commit": self.commit,
            "image": self.image,
            "started": iso(self.started),
            "ended": iso(self.ended),
            "ready": self.ready,
            "entry": self.entry.to_dict(),
        }
