"""``pgpulse collect --once`` and the collector as a part of ``pgpulse up``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from polling import wait_for

from pgpulse.commands.up import build_services
from pgpulse.tiers import HOST_FIELDS


def test_once_prints_one_snapshot(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "COLLECTOR_", "DATABASE_URL"))}
    env.update(COLLECTOR_HOSTNAME="once-host", COLLECTOR_LABELS="env=test", COLLECTOR_TOP_N="2",
               PGPULSE_DATA_DIR=str(tmp_path / "var"))
    proc = subprocess.run([sys.executable, "-m", "pgpulse", "collect", "--once"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)  # stdout is the JSON alone
    assert set(row) == {"host", "time", "data"}
    assert row["host"] == "once-host"
    data = row["data"]
    assert data["schema"] == 1 and data["labels"] == {"env": "test"}
    for path in HOST_FIELDS.values():
        value = data
        for key in path:
            value = value[key]
        assert isinstance(value, int | float)
    assert len(data["top"]["by_memory"]) == 2
    assert not (tmp_path / "var").exists()  # --once writes nothing


def test_up_runs_the_collector_and_flushes_on_stop(conn, db_url, core_settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("COLLECTOR_INTERVAL", "0.2")
    monkeypatch.setenv("COLLECTOR_HOSTNAME", "up-host")
    monkeypatch.setenv("COLLECTOR_TOP_N", "0")
    without = build_services(db_url, core_settings, "portable", argparse.Namespace(no_proxy=True, no_collector=True))
    assert [s.name for s in without] == ["scheduler"]
    services = build_services(db_url, core_settings, "portable",
                              argparse.Namespace(no_proxy=True, no_collector=False))
    assert [s.name for s in services] == ["scheduler", "collector"]
    collector = services[-1]
    assert collector.agent is None  # built at start(), once the services before it run
    collector.start()
    # Wait on the ticks, not a fixed second: a loaded machine may take longer.
    wait_for(lambda: collector.agent.ticks >= 3, 60, "three collector ticks")
    collector.stop()
    ticks = collector.agent.ticks
    assert ticks >= 3
    count = conn.execute("SELECT count(*), count(DISTINCT time) FROM system_metrics WHERE host = 'up-host'").fetchone()
    assert count == (ticks, ticks)  # everything taken is in, after stop()
    assert (core_settings.data_dir / "spool" / "spool.sqlite3").exists()


def test_lean_entry_point_runs_the_same_agent(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "COLLECTOR_", "DATABASE_URL"))}
    env.update(COLLECTOR_HOSTNAME="lean-host", PGPULSE_DATA_DIR=str(tmp_path / "var"))
    proc = subprocess.run([sys.executable, "-m", "collector", "--once"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["host"] == "lean-host"
    env["COLLECTOR_TOP_N"] = "many"
    proc = subprocess.run([sys.executable, "-m", "collector"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pgpulse: configuration error: COLLECTOR_TOP_N='many': expected an integer"
    ]
