"""End to end: `pgpulse collect` with the http sink, pushing to a real proxy.

The proxy runs in this process (werkzeug, as in `pgpulse up`) with auth on; the
collector is a subprocess holding only an API key, no database credentials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psycopg
import pytest
from polling import wait_for
from proxy_helpers import live_proxy, new_key


@pytest.fixture
def proxy_url(db_url):
    with live_proxy(db_url) as url:
        yield url


def collector_env(tmp_path, proxy_url: str, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PGPULSE_", "COLLECTOR_", "DATABASE_URL", "LOKI_URL"))}
    env.update(COLLECTOR_SINK="http", COLLECTOR_HTTP_URL=proxy_url, COLLECTOR_API_KEY=key,
               COLLECTOR_INTERVAL="0.2", COLLECTOR_HOSTNAME="pushed-host", COLLECTOR_TOP_N="0",
               PGPULSE_DATA_DIR=str(tmp_path / "var"), LOG_FORMAT="text")
    return env


def rows(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT time, data->>'schema', data #> '{cpu,percent}' IS NOT NULL "
            "FROM system_metrics WHERE host = 'pushed-host' ORDER BY time").fetchall()


def test_snapshots_pushed_over_http_land_once(db_url, proxy_url, tmp_path):
    key = new_key(db_url, "ingest")
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "collect"],
                            env=collector_env(tmp_path, proxy_url, key), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(rows(db_url)) >= 5, 60, "five snapshots pushed", interval=0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    landed = rows(db_url)
    assert len(landed) >= 5, out
    assert len({t for t, _, _ in landed}) == len(landed)  # no time twice
    assert {(schema, has_cpu) for _, schema, has_cpu in landed} == {("1", True)}


def test_a_key_without_ingest_scope_writes_nothing_and_says_why(db_url, proxy_url, tmp_path):
    key = new_key(db_url, "query")
    proc = subprocess.Popen([sys.executable, "-m", "pgpulse", "collect"],
                            env=collector_env(tmp_path, proxy_url, key), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # Wait for the refusal itself, not a fixed few seconds: a loaded machine is slow.
        wait_for(lambda: any("403" in line for line in lines), 60, "the collector to report the 403")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=60)
    assert rows(db_url) == []
