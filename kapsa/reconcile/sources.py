"""What Kapsa knows of each Project's repository: branch heads from the last listing.

Listings are `git ls-remote` (never a clone per poll). A failed listing is kept as an error beside
the last good heads, never as evidence that branches are gone: a branch counts as gone only after
`branch_gone_after` consecutive successful listings without it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from kapsa.errors import KapsaError
from kapsa.git.remote import list_branches
from kapsa.git.urls import CheckedURL, validate_url
from kapsa.k8s.client import JSON
from kapsa.reconcile.context import Context
from kapsa.reconcile.tenancy import git_credentials

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    heads: dict[str, str] = field(default_factory=dict)
    """The last successful listing: branch -> commit."""
    error: str | None = None
    """The error of the newest listing, if it failed."""
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
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._lock = threading.Lock()

    def get(self, project: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(project)

    def forget(self, project: str) -> None:
        with self._lock:
            self._snapshots.pop(project, None)

    def poll(self, ctx: Context, project: JSON) -> tuple[Snapshot, bool]:
        """List the branches now; returns the snapshot and whether anything changed."""
        name = project["metadata"]["name"]
        git = project["spec"]["source"]["git"]
        try:
            url = checked_url(ctx, git["url"])
            credentials = git_credentials(ctx, project)
            heads = list_branches(url, credentials=credentials, timeout=ctx.settings.git_timeout)
        except KapsaError as error:
            with self._lock:
                snapshot = self._snapshots.setdefault(name, Snapshot())
                changed = snapshot.error != str(error)
                snapshot.error = str(error)
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
