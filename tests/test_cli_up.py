"""`pgpulse up`, `migrate`, `status` and `tiers refresh` as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from polling import wait_for

from pgpulse.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent


def pgpulse_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "DATABASE_URL", "COLLECTOR_", "MONGO_"))}
    env.update({"PGPULSE_DATA_DIR": str(tmp_path / "var"), "LOG_FORMAT": "text", "PGPULSE_AUTH": "off"})
    env.update(extra)
    return env


def pgpulse(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgpulse", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def status(env, cwd) -> dict:
    proc = pgpulse("status", "--json", env=env, cwd=cwd)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def status_when_ready(env, cwd) -> dict | None:
    """Status once the database answers (None while `up` is still starting it)."""
    proc = pgpulse("status", "--json", env=env, cwd=cwd)
    if proc.returncode == 1 and "cannot reach the database" in proc.stderr:
        return None
    return status(env, cwd)


def test_migrate_status_refresh(empty_db_url, tmp_path, test_engine):
    # PGPULSE_ENGINE=auto: the engine the server under test offers
    env = pgpulse_env(tmp_path, DATABASE_URL=empty_db_url)
    before = status(env, tmp_path)
    assert before["engine"] is None and before["revision"] is None
    proc = pgpulse("migrate", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"engine: {test_engine}" in proc.stdout
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO samples SELECT t, 1, 1 FROM generate_series(now() - interval '1 hour', now() - interval '10 minutes', interval '1 minute') t")
    proc = pgpulse("tiers", "refresh", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "samples_5m" in proc.stdout
    after = status(env, tmp_path)
    assert after["engine"] == test_engine and after["revision"] == after["head"]
    tiers = {t["relation"]: t for t in after["tiers"]}
    assert tiers["samples"]["rows"] == 51
    assert tiers["samples_5m"]["rows"] >= 10
    text = pgpulse("status", env=env, cwd=tmp_path)
    assert f"engine:  {test_engine}" in text.stdout and "samples_5m" in text.stdout


def test_unreachable_database_is_one_clear_line(tmp_path):
    env = pgpulse_env(tmp_path, DATABASE_URL="postgresql://nobody:secretpw@127.0.0.1:1/none?connect_timeout=2")
    proc = pgpulse("status", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("pgpulse: cannot reach the database:")
    assert "secretpw" not in proc.stderr


def start_up(env, cwd, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgpulse", "up", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_up(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def test_up_fills_the_tiers_while_data_arrives(empty_db_url, tmp_path, test_engine):
    # portable: pgpulse's scheduler rolls up into the rollup tables; timescale: the
    # aggregates answer (TimescaleDB's scheduler materialises them)
    env = pgpulse_env(tmp_path, DATABASE_URL=empty_db_url, PGPULSE_ROLLUP_INTERVAL_SECONDS="1")
    proc = start_up(env, tmp_path, "--no-proxy", "--no-collector")
    try:
        wait_for(lambda: status(env, tmp_path)["revision"] is not None, 60, "migrations")
        with psycopg.connect(empty_db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO samples SELECT t, 1, 1 FROM generate_series(now() - interval '40 minutes', "
                "now() - interval '6 minutes', interval '10 seconds') t")
        def filled():
            tiers = {t["relation"]: t for t in status(env, tmp_path)["tiers"]}
            if test_engine == "timescale":
                return tiers["samples_5m"]["rows"] >= 6
            with psycopg.connect(empty_db_url) as conn:
                stored = conn.execute("SELECT count(*) FROM pgpulse_samples_5m_store").fetchone()[0]
            return stored >= 6 and tiers["samples_5m"]["rows"] >= 6
        wait_for(filled, 60, "the 5m tier to be rolled up by the scheduler")
    finally:
        out = stop_up(proc)
    assert "scheduler stopped" in out


def test_up_without_database_url_runs_embedded_and_keeps_data(tmp_path):
    env = pgpulse_env(tmp_path)
    proc = start_up(env, tmp_path, "--no-proxy", "--no-collector")
    try:
        st = wait_for(lambda: (s := status_when_ready(env, tmp_path)) and s["revision"] and s, 120,
                      "embedded migrations")
        assert st["engine"] == "portable"
        assert (tmp_path / "var" / "pgdata" / "PG_VERSION").is_file()
        # join the running embedded server, as `pgpulse status` does, and write a row
        embedded = EmbeddedPostgres(tmp_path / "var")
        with psycopg.connect(embedded.start(), autocommit=True) as conn:
            conn.execute("INSERT INTO system_metrics VALUES (now(), 'kept', '{}')")
        embedded.stop()
    finally:
        stop_up(proc)
    proc = start_up(env, tmp_path, "--no-proxy", "--no-collector")
    try:
        wait_for(lambda: (s := status_when_ready(env, tmp_path)) and s["revision"], 120, "restart")
        tiers = {t["relation"]: t for t in status(env, tmp_path)["tiers"]}
        assert tiers["system_metrics"]["rows"] == 1
    finally:
        stop_up(proc)
