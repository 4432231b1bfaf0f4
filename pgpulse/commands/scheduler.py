"""``pgpulse scheduler``: pgpulse's scheduled jobs alone, in the foreground.

For deployments where `pgpulse up` is not what runs: the proxy under gunicorn runs
no jobs, so this process keeps the portable engine's rollups and retention going
(on TimescaleDB its job scheduler does that) and runs the ETL every
ETL_INTERVAL_MINUTES when MONGO_URI is set. One instance per database is enough;
a second one is harmless (every job takes an advisory lock).
"""

from __future__ import annotations

import sys

from pgpulse.logs import setup_logging
from pgpulse.runtime import database, run_until_stopped
from pgpulse.settings import CoreSettings, load_core


def register(sub) -> None:
    p = sub.add_parser("scheduler", help="run the scheduled jobs (rollups, retention, ETL) alone")
    p.set_defaults(func=run)


class ScheduledJobs:
    """The scheduler with the tier jobs and the ETL's scheduled run (a service of
    ``pgpulse up`` / ``pgpulse scheduler``); stopping it also releases the ETL's
    MongoDB client."""

    name = "scheduler"

    def __init__(self, url: str, settings: CoreSettings, mode: str) -> None:
        # Imported here: the CLI loads every command module, and these are heavy.
        from etl import schedule
        from pgpulse.scheduler import SchedulerService

        self.jobs = SchedulerService(url, settings, mode)
        self.scheduler = self.jobs.scheduler
        # The ETL service is built once, here, from its settings and its source.
        self.etl = schedule.build(url)
        if self.etl is not None:
            schedule.add_job(self.scheduler, self.etl)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        if self.etl is not None:
            self.etl.close()


def scheduler_service(url: str, settings: CoreSettings, mode: str) -> ScheduledJobs:
    """The scheduler with the tier jobs of ``mode`` and the ETL's scheduled run."""
    return ScheduledJobs(url, settings, mode)


def run(args) -> int:
    from pgpulse import engine as engine_mode
    from pgpulse import schema
    from pgpulse.db import connect

    settings = load_core()
    shipper = setup_logging("pgpulse-scheduler", settings.log_level, settings.log_format,
                            settings.loki_url)
    try:
        with database(settings) as url:
            with connect(url) as conn:
                mode = engine_mode.recorded(conn)
                current = schema.current_revision(conn)
            if current != schema.head_revision():
                print(f"pgpulse: the database schema is at {current or 'nothing'}, not at "
                      f"{schema.head_revision()}: run `pgpulse migrate` first", file=sys.stderr)
                return 1
            run_until_stopped([scheduler_service(url, settings, mode)],
                              f"scheduler running (engine {mode}); Ctrl-C stops it")
    finally:
        if shipper is not None:
            shipper.stop()
    return 0
