"""The scheduled ETL run: added to `pgpulse up`'s APScheduler when configured, and a
run that cannot happen costs only that run.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines),
through the same client_factory path as pymongo; the unreachable case uses the real
pymongo driver. PostgreSQL is the real server.
"""

from __future__ import annotations

import argparse
import logging

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from etl_helpers import MONGO_URI, closed_port, count, etl_settings, reading

from etl import runs, schedule
from pgpulse.commands import up

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, factory


def test_job_added_when_configured():
    scheduler = BackgroundScheduler(timezone="UTC")
    assert schedule.add_job(scheduler, "postgresql://x/y", {"MONGO_URI": MONGO_URI, "ETL_INTERVAL_MINUTES": "3"})
    job = scheduler.get_job(schedule.JOB_ID)
    assert job is not None and job.trigger.interval.total_seconds() == 180


def test_no_job_when_off_or_unconfigured_or_bad(caplog):
    caplog.set_level(logging.INFO, logger="etl.schedule")
    for environ in ({}, {"MONGO_URI": MONGO_URI, "ETL_INTERVAL_MINUTES": "0"},
                    {"MONGO_URI": MONGO_URI, "ETL_BATCH_SIZE": "none"}):
        scheduler = BackgroundScheduler(timezone="UTC")
        assert schedule.add_job(scheduler, "postgresql://x/y", environ) is False
        assert scheduler.get_jobs() == []
    assert "ETL_BATCH_SIZE='none': expected an integer" in caplog.text


def test_up_registers_the_job(db_url, core_settings, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("MONGO_URI", MONGO_URI)
    args = argparse.Namespace(no_proxy=True, no_collector=True)
    services = up.build_services(db_url, core_settings, "portable", args)
    scheduler = next(s for s in services if s.name == "scheduler").scheduler
    assert scheduler.get_job(schedule.JOB_ID) is not None


def test_job_runs_and_survives_what_stops_a_run(db_url, conn, readings, factory, caplog):
    caplog.set_level(logging.INFO, logger="etl.schedule")
    readings.insert_many([reading(i) for i in range(3)])
    job = schedule.etl_job(db_url, etl_settings(), factory)
    result = job()
    assert result is not None and result.trigger == "schedule" and result.loaded == 3

    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (runs.LOCK_NAME,))
        assert job() is None
    assert "scheduled ETL run skipped: an ETL run is already going" in caplog.text

    down = schedule.etl_job(db_url, etl_settings(
        MONGO_URI=f"mongodb://127.0.0.1:{closed_port()}/", MONGO_SERVER_SELECTION_TIMEOUT_MS="200"))
    assert down() is None
    assert "scheduled ETL run failed: MongoDB at 127.0.0.1" in caplog.text
    assert count(conn, "SELECT count(*) FROM etl_runs WHERE trigger = 'schedule' AND status = 'failed'") == 1
