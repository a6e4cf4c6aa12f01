"""The poll and resync jobs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

RESYNC_JOB = "resync"


class Scheduler:
    """Keeps one poll job per Project at that Project's interval, plus the resync."""

    def __init__(
        self,
        *,
        poll: Callable[[str], None],
        resync: Callable[[], None],
        resync_seconds: float,
        jitter_fraction: float = 0.1,
    ) -> None:
        self._poll = poll
        self._scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )
        self._intervals: dict[str, float] = {}
        self._jitter = jitter_fraction
        self._scheduler.add_job(
            resync, "interval", seconds=resync_seconds, id=RESYNC_JOB, replace_existing=True
        )

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def track(self, project: str, *, interval_seconds: float) -> None:
        """Poll `project` every interval (with jitter, so projects do not poll in step)."""
        if self._intervals.get(project) == interval_seconds:
            return
        self._intervals[project] = interval_seconds
        self._scheduler.add_job(
            self._poll,
            "interval",
            args=[project],
            seconds=interval_seconds,
            jitter=max(1, int(interval_seconds * self._jitter)),
            id=f"poll:{project}",
            replace_existing=True,
        )

    def poll_now(self, project: str) -> bool:
        """Run the project's poll job now (a push webhook), so two listings never overlap."""
        if project not in self._intervals:
            return False
        try:
            self._scheduler.modify_job(f"poll:{project}", next_run_time=datetime.now(UTC))
        except LookupError:
            return False
        return True

    def forget(self, project: str) -> None:
        if self._intervals.pop(project, None) is not None:
            with contextlib.suppress(LookupError):
                self._scheduler.remove_job(f"poll:{project}")

    def tracked(self) -> dict[str, float]:
        return dict(self._intervals)
