"""The scheduled ETL run of ``pgpulse up`` / ``pgpulse scheduler``: every
ETL_INTERVAL_MINUTES (0: off).

The composition root builds the ETL service once (:func:`build`) and calls
:func:`add_job` on its APScheduler scheduler; the job keeps the service's MongoDB
client between runs. A run that cannot start (another run is going, MongoDB is
down) costs that run only: it is recorded (when it started) and logged, and the
next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from etl import runs
from etl.service import EtlService
from etl.settings import load_etl
from etl.source import SourceError
from pgpulse.config import SettingsError
from pgpulse.settings import load_core
from pgpulse.store.series import SeriesLimits

log = logging.getLogger("etl.schedule")
JOB_ID = "etl"


def build(url: str, environ: Mapping[str, Any] | None = None) -> EtlService | None:
    """The ETL service to schedule, from the settings in ``environ`` (default: the
    environment), or None when there is nothing to schedule: MONGO_URI not set,
    ETL_INTERVAL_MINUTES=0, or settings that are not usable (logged, not raised: the
    rest of pgpulse runs without the ETL)."""
    try:
        settings = load_etl(environ)
    except SettingsError as exc:
        log.error("ETL schedule off, its settings are not usable: %s", exc)
        return None
    if not settings.configured or settings.interval_minutes == 0:
        log.info("ETL schedule off (%s)", "MONGO_URI is not set" if not settings.configured
                 else "ETL_INTERVAL_MINUTES=0")
        return None
    return EtlService.from_settings(url, settings, SeriesLimits.from_settings(load_core(environ)))


def etl_job(etl: EtlService) -> Callable[[], runs.RunResult | None]:
    """The scheduled job: one run (up to ETL_MAX_BATCHES batches) per call."""

    def job() -> runs.RunResult | None:
        try:
            return etl.run("schedule")
        except runs.RunInProgress as exc:
            log.info("scheduled ETL run skipped: %s", exc)
        except SourceError as exc:
            log.warning("scheduled ETL run failed: %s", exc)
        except psycopg.OperationalError as exc:
            log.warning("scheduled ETL run skipped, database unavailable: %s", str(exc).strip())
        return None

    return job


def add_job(scheduler: Any, etl: EtlService) -> None:
    """Run ``etl`` on ``scheduler`` every ETL_INTERVAL_MINUTES (which must not be 0)."""
    minutes = etl.settings.interval_minutes
    if minutes <= 0:
        raise ValueError("ETL_INTERVAL_MINUTES is 0: the ETL is not scheduled")
    scheduler.add_job(
        etl_job(etl),
        "interval",
        minutes=minutes,
        id=JOB_ID,
        # First run shortly after start, once the rest of pgpulse is up.
        next_run_time=datetime.now(UTC) + timedelta(seconds=10),
    )
    log.info("ETL scheduled every %d min from %s", minutes, etl.where)
