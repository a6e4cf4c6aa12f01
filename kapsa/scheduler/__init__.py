"""Timers that only enqueue: per-Project polls, the full resync.

APScheduler 3 with the in-memory store, `coalesce` and `max_instances=1`, run only on the elected
leader: its job stores cannot be shared between processes, so no other arrangement avoids double
runs.
"""

from kapsa.scheduler.jobs import Scheduler

__all__ = ["Scheduler"]
