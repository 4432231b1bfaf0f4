"""The scheduled ETL run of ``pgpulse up``: every ETL_INTERVAL_MINUTES (0: off).

``pgpulse up`` calls :func:`add_job` on its APScheduler scheduler. The job keeps one
MongoDB client between runs. A run that cannot start (another run is going,
MongoDB is down) costs that run only: it is recorded (when it started) and logged,
and the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from etl import runs
from etl.settings import ClientFactory, EtlSettings, load_etl
from etl.source import MongoSource, SourceError
from pgpulse.config import SettingsError

log = logging.getLogger("etl.schedule")
JOB_ID = "etl"


def etl_job(url: str, settings: EtlSettings, client_factory: ClientFactory | None = None) -> Callable[[], None]:
    """The scheduled job: one run (up to ETL_MAX_BATCHES batches) per call."""
    source = MongoSource(settings, client_factory)

    def job() -> runs.RunResult | None:
        try:
            return runs.run(url, settings, trigger="schedule", source=source)
        except runs.RunInProgress as exc:
            log.info("scheduled ETL run skipped: %s", exc)
        except SourceError as exc:
            log.warning("scheduled ETL run failed: %s", exc)
        except psycopg.OperationalError as exc:
            log.warning("scheduled ETL run skipped, database unavailable: %s", str(exc).strip())
        return None

    return job


def add_job(scheduler: Any, url: str, environ: Mapping[str, Any] | None = None) -> bool:
    """Add the ETL job to ``scheduler`` when MONGO_URI is set and the interval is not 0.

    Returns whether a job was added. Bad ETL settings are logged, not raised: the
    rest of pgpulse runs without the ETL.
    """
    try:
        settings = load_etl(environ)
    except SettingsError as exc:
        log.error("ETL schedule off, its settings are not usable: %s", exc)
        return False
    if not settings.configured or settings.interval_minutes == 0:
        log.info("ETL schedule off (%s)", "MONGO_URI is not set" if not settings.configured
                 else "ETL_INTERVAL_MINUTES=0")
        return False
    scheduler.add_job(
        etl_job(url, settings),
        "interval",
        minutes=settings.interval_minutes,
        id=JOB_ID,
        # First run shortly after start, once the rest of pgpulse is up.
        next_run_time=datetime.now(UTC) + timedelta(seconds=10),
    )
    log.info("ETL scheduled every %d min from %s", settings.interval_minutes, MongoSource(settings).where)
    return True
