"""pgpulse's job scheduler (APScheduler): tier rollups and maintenance, plus jobs
that other parts register (the ETL's scheduled run).

In timescale mode TimescaleDB runs rollups, retention and compression itself, so only the
registered jobs and the pruning of staleness markers (a plain table on both
engines) run here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler

from pgpulse import engine as engine_mode
from pgpulse import tiers
from pgpulse.settings import CoreSettings

log = logging.getLogger(__name__)


def _guarded(name: str, job: Callable[[], object]) -> Callable[[], None]:
    """Run ``job``; a database that is away costs this run, not the scheduler."""

    def run() -> None:
        try:
            result = job()
            log.debug("job %s done: %s", name, result)
        except psycopg.OperationalError as exc:
            log.warning("job %s skipped, database unavailable: %s", name, str(exc).strip())

    return run


class SchedulerService:
    """The scheduler as a part of ``pgpulse up`` / ``pgpulse scheduler``."""

    name = "scheduler"

    def __init__(self, url: str, settings: CoreSettings, mode: str) -> None:
        self.scheduler = build(url, settings, mode)

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)


def build(url: str, settings: CoreSettings, mode: str) -> BackgroundScheduler:
    """A scheduler (not started) with the tier jobs for ``mode``; each runs once at start."""
    scheduler = BackgroundScheduler(
        timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
    )
    if mode == engine_mode.PORTABLE:
        scheduler.add_job(
            _guarded("rollup", lambda: tiers.refresh(url, settings)),
            "interval",
            seconds=settings.rollup_interval_s,
            id="rollup",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            _guarded("maintain", lambda: tiers.maintain(url, settings)),
            "interval",
            hours=1,
            id="maintain",
            next_run_time=datetime.now(UTC),
        )
    if mode == engine_mode.PORTABLE and settings.portable_compression:
        # Every quarter of an hour: an hour becomes old enough once an hour, and a
        # run with nothing to pack costs one index lookup.
        scheduler.add_job(
            _guarded("compress", lambda: tiers.compress(url, settings)),
            "interval",
            minutes=15,
            id="compress",
            next_run_time=datetime.now(UTC),
        )
    scheduler.add_job(
        _guarded("stale_markers", lambda: tiers.prune_stale_markers(url, settings)),
        "interval",
        hours=1,
        id="stale_markers",
        next_run_time=datetime.now(UTC),
    )
    return scheduler

