"""Deployments read off an environment's transitions: pure, so it is tested without a database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from kapsa.api import Phase
from kapsa.ledger.records import Deployment, Entry


@dataclass
class _Running:
    """The deployment still open while the transitions are walked."""

    deployment: Deployment

    def close(self, *, at: datetime) -> Deployment:
        return replace(self.deployment, ended=at)


def deployments_from(entries: Iterable[Entry]) -> list[Deployment]:
    """Each image that reached Running, oldest first, from when to when.

    `entries` are one environment's transitions in time order. A deployment starts when the
    environment becomes Running with an image other than the one running, and ends when another
    image becomes Running, when the environment starts Expiring, or when the environment is
    recreated (a new uid under the same name). A Running transition that names no image is
    taken to run the last image a transition named. Releases are numbered from 1 in that order.
    """
    done: list[Deployment] = []
    running: _Running | None = None
    known: tuple[str | None, str | None] = (None, None)
    uid: str | None = None
    for entry in entries:
        if running is not None and uid is not None and entry.uid != uid:
            done.append(running.close(at=entry.at))
            running = None
        uid = entry.uid
        if entry.image is not None:
            known = (entry.commit, entry.image)
        if entry.to_state == Phase.RUNNING:
            commit, image = (entry.commit, entry.image) if entry.image is not None else known
            current = running.deployment if running is not None else None
            if current is not None and (current.commit, current.image) == (commit, image):
                running = _Running(replace(current, ready=True))
                continue
            if running is not None:
                done.append(running.close(at=entry.at))
            running = _Running(
                Deployment(
                    release=len(done) + 1,
                    commit=commit,
                    image=image,
                    started=entry.at,
                    ended=None,
                    ready=True,
                    entry=entry,
                )
            )
        elif running is not None and entry.to_state == Phase.EXPIRING:
            done.append(running.close(at=entry.at))
            running = None
        elif running is not None and entry.to_state == Phase.FAILED:
            current = running.deployment
            if entry.from_state == Phase.RUNNING or entry.image == current.image:
                running = _Running(replace(current, ready=False))
    if running is not None:
        done.append(running.deployment)
    return done
