"""The scheduled ETL run: added to `pgpulse up`'s APScheduler when configured, and a
run that cannot happen costs only that run.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines),
read through the production MongoSource (etl_helpers.MockSource); the unreachable
case uses the real pymongo driver. PostgreSQL is the real server.
"""

from __future__ import annotations

import argparse
import logging

import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from etl_helpers import MONGO_URI, closed_port, count, etl_settings, reading

from etl import runs, schedule
from etl.service import EtlService
from pgpulse.commands import up

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, etl


def test_job_added_when_configured():
    scheduler = BackgroundScheduler(timezone="UTC")
    etl = schedule.build("postgresql://x/y", {"MONGO_URI": MONGO_URI, "ETL_INTERVAL_MINUTES": "3"})
    assert etl is not None
    schedule.add_job(scheduler, etl)
    job = scheduler.get_job(schedule.JOB_ID)
    assert job is not None and job.trigger.interval.total_seconds() == 180
    etl.close()


def test_no_job_when_off_or_unconfigured_or_bad(caplog):
    caplog.set_level(logging.INFO, logger="etl.schedule")
    for environ in ({}, {"MONGO_URI": MONGO_URI, "ETL_INTERVAL_MINUTES": "0"},
                    {"MONGO_URI": MONGO_URI, "ETL_BATCH_SIZE": "none"}):
        assert schedule.build("postgresql://x/y", environ) is None
    assert "ETL_BATCH_SIZE='none': expected an integer" in caplog.text


def test_up_registers_the_job(db_url, core_settings, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("MONGO_URI", MONGO_URI)
    args = argparse.Namespace(no_proxy=True, no_collector=True)
    services = up.build_services(db_url, core_settings, "portable", args)
    service = next(s for s in services if s.name == "scheduler")
    assert service.scheduler.get_job(schedule.JOB_ID) is not None
    assert service.etl.settings.mongo_uri == MONGO_URI


def test_job_runs_and_survives_what_stops_a_run(db_url, conn, readings, etl, caplog):
    caplog.set_level(logging.INFO, logger="etl.schedule")
    readings.insert_many([reading(i) for i in range(3)])
    job = schedule.etl_job(etl(etl_settings()))
    result = job()
    assert result is not None and result.trigger == "schedule" and result.loaded == 3

    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (runs.LOCK_NAME,))
        assert job() is None
    assert "scheduled ETL run skipped: an ETL run is already going" in caplog.text

    down = schedule.etl_job(EtlService.from_settings(db_url, etl_settings(
        MONGO_URI=f"mongodb://127.0.0.1:{closed_port()}/", MONGO_SERVER_SELECTION_TIMEOUT_MS="200")))
    assert down() is None
    assert "scheduled ETL run failed: MongoDB at 127.0.0.1" in caplog.text
    assert count(conn, "SELECT count(*) FROM etl_runs WHERE trigger = 'schedule' AND status = 'failed'") == 1
