"""What Kapsa knows of each Project's repository: branch heads from the last listing.

Listings are `git ls-remote` (never a clone per poll). A failed listing is kept as an error beside
the last good heads, never as evidence that branches are gone: a branch counts as gone only after
`branch_gone_after` consecutive successful listings without it.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from kapsa.errors import HostKeyUnknownError, KapsaError, ListingTooLargeError
from kapsa.git.remote import list_branches
from kapsa.git.urls import CheckedURL, url_host, validate_url
from kapsa.k8s.client import JSON
from kapsa.reconcile.context import Context
from kapsa.reconcile.pollgate import PollGate
from kapsa.reconcile.tenancy import git_credentials

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    heads: dict[str, str] = field(default_factory=dict)
    """The last successful listing: branch -> commit."""
    error: str | None = None
    """The error of the newest listing, if it failed."""
    reason: str = "SourceUnreachable"
    """The condition reason of that error."""
    listed_at: datetime | None = None
    misses: dict[str, int] = field(default_factory=dict)
    """Consecutive successful listings without a branch that was once seen."""
    ok: bool = False


def checked_url(ctx: Context, url: str) -> CheckedURL:
    """`url` checked against the operator's rules now, right before a git call: a host that did
    not resolve at the last check, or resolves elsewhere since, is judged by what it is now."""
    return validate_url(
        url,
        allow_insecure=ctx.settings.allow_insecure_sources,
        allow_private_hosts=ctx.settings.allow_private_hosts,
    )


class Sources:
    def __init__(self, gate: PollGate | None = None) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        self.gate = gate or PollGate()

    def get(self, project: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(project)

    def forget(self, project: str) -> None:
        with self._lock:
            self._snapshots.pop(project, None)

    def poll(self, ctx: Context, project: JSON, *, gated: bool = False) -> tuple[Snapshot, bool]:
        """List the branches now; returns the snapshot and whether anything changed.

        `gated` (the scheduler's polls) takes a slot of the PollGate first and skips the
        listing, changing nothing, when the host has none free; a Project's first listing,
        which its reconcile waits for, is not gated.
        """
        name = project["metadata"]["name"]
        git = project["spec"]["source"]["git"]
        try:
            url = checked_url(ctx, git["url"])
            credentials = git_credentials(ctx, project)
            slot = self.gate.slot(url_host(url)) if gated else nullcontext(True)
            with slot as allowed:
                if not allowed:
                    log.info("listing %s skipped: its host has no free poll slot", name)
                    with self._lock:
                        return self._snapshots.setdefault(name, Snapshot()), False
                heads = ctx.git(
                    list_branches, url, credentials=credentials, timeout=ctx.settings.git_timeout
                )
        except KapsaError as error:
            with self._lock:
                snapshot = self._snapshots.setdefault(name, Snapshot())
                changed = snapshot.error != str(error)
                snapshot.error = str(error)
                reason = (
                    "ListingTooLarge"
                    if isinstance(error, ListingTooLargeError)
                    else "HostKeyUnknown"
                    if isinstance(error, HostKeyUnknownError)
                    else "SourceUnreachable"
                )
                snapshot.reason = reason
                snapshot.ok = False
            log.info("listing %s failed: %s", name, error)
            return snapshot, changed
        with self._lock:
            snapshot = self._snapshots.setdefault(name, Snapshot())
            changed = snapshot.heads != heads or snapshot.error is not None or not snapshot.ok
            for branch in set(snapshot.heads) | set(snapshot.misses):
                if branch in heads:
                    snapshot.misses.pop(branch, None)
                else:
                    snapshot.misses[branch] = snapshot.misses.get(branch, 0) + 1
                    changed = True
            snapshot.heads = heads
            snapshot.error = None
            snapshot.ok = True
            snapshot.listed_at = ctx.now()
        return snapshot, changed
