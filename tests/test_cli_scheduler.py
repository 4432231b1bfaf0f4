"""`pgpulse scheduler`: the scheduled jobs alone, for when the proxy runs under gunicorn."""

from __future__ import annotations

import signal
import subprocess
import sys

import psycopg
import pytest
from test_cli_up import pgpulse, pgpulse_env, wait_for

from pgpulse import schema


def test_refuses_a_database_not_at_head(empty_db_url, tmp_path):
    proc = pgpulse("scheduler", env=pgpulse_env(tmp_path, DATABASE_URL=empty_db_url), cwd=tmp_path)
    assert proc.returncode == 1
    assert "run `pgpulse migrate` first" in proc.stderr


@pytest.mark.engine("portable")  # pgpulse's scheduler rolls up only there
def test_rolls_up_and_stops_cleanly(db_url, tmp_path):
    env = pgpulse_env(tmp_path, DATABASE_URL=db_url, PGPULSE_ROLLUP_INTERVAL_SECONDS="1")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO samples SELECT t, 1, 2 FROM generate_series(now() - interval '30 minutes', "
                     "now() - interval '6 minutes', interval '10 seconds') t")
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "scheduler"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def rolled_up():
            with psycopg.connect(db_url) as conn:
                return conn.execute("SELECT count(*) FROM pgpulse_samples_5m_store").fetchone()[0] >= 4
        wait_for(rolled_up, 60, "the scheduler's first rollup")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "scheduler stopped" in out
    with psycopg.connect(db_url) as conn:
        assert schema.current_revision(conn) == schema.head_revision()
