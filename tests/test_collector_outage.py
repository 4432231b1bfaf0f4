"""No loss through database outages: the collector behind a TCP relay (tests/tcp_relay.py)
that cuts PostgreSQL off and gives it back, and a ``kill -9`` of the agent in the
middle of a flush. Every acknowledged snapshot (durably in the spool) ends up in
system_metrics exactly once."""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import polling
import psycopg
import pytest
from tcp_relay import TcpRelay

from collector.agent import Agent
from collector.sinks.postgres import PostgresSink
from collector.snapshot import Sampler
from collector.spool import FILE, Spool

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def relay(pg_server):
    r = TcpRelay(pg_server.host, pg_server.port)
    yield r
    r.close()


def via(relay: TcpRelay, db_url: str, user: str) -> str:
    dbname = urlsplit(db_url).path.lstrip("/")
    return f"postgresql://{user}@127.0.0.1:{relay.port}/{dbname}"


# The agent ticks every few hundred ms here: look often.
wait_for = functools.partial(polling.wait_for, interval=0.05)


def stored(conn: psycopg.Connection, host: str) -> list[datetime]:
    return [r[0] for r in conn.execute("SELECT time FROM system_metrics WHERE host = %s", (host,))]


def test_database_cut_and_restored(conn, db_url, pg_server, relay, tmp_path):
    host = "outage-host"
    sink = PostgresSink(via(relay, db_url, pg_server.user))
    agent = Agent(
        Sampler(top_n=0), Spool(tmp_path / "spool", 10_000), sink, host=host,
        interval=0.2, retry_max_s=0.4, flush_timeout_s=10,
    )
    agent.start()
    try:
        wait_for(lambda: len(stored(conn, host)) >= 3, 60, "snapshots before the cut")
        relay.cut()
        during = len(stored(conn, host))
        ticks_at_cut = agent.ticks
        wait_for(lambda: agent.ticks >= ticks_at_cut + 8, 60, "ticks during the outage")
        # Nothing reached the database meanwhile (at most a write in flight at the cut).
        assert len(stored(conn, host)) <= during + 1
        assert len(agent.spool) >= 6
        relay.restore()
        ticks_at_restore = agent.ticks
        wait_for(lambda: agent.ticks >= ticks_at_restore + 3 and len(agent.spool) == 0, 60,
                 "the spool to drain after the restore")
    finally:
        agent.stop()
    times = stored(conn, host)
    assert len(times) == len(set(times)), "a snapshot was stored twice"
    assert len(times) == agent.ticks, "a snapshot was lost"
    assert agent.lost == 0
    after = Spool(tmp_path / "spool", 10_000)
    assert len(after) == 0 and after.dropped == 0 and after.rejected == 0
    after.close()


def test_kill_9_mid_flush_then_restart(conn, db_url, pg_server, relay, tmp_path):
    host = "killed-host"
    spool_dir = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PGPULSE_", "COLLECTOR_", "DATABASE_URL", "LOKI_", "LOG_"))}
    env.update(
        DATABASE_URL=via(relay, db_url, pg_server.user),
        PGPULSE_DATA_DIR=str(tmp_path / "var"),
        COLLECTOR_SPOOL_DIR=str(spool_dir),
        COLLECTOR_HOSTNAME=host,
        COLLECTOR_INTERVAL="0.2",
        COLLECTOR_TOP_N="0",
        COLLECTOR_BATCH_SIZE="2",
        COLLECTOR_RETRY_MAX_SECONDS="0.5",
        LOG_LEVEL="debug",
        LOG_FORMAT="json",
    )

    def start(log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen([sys.executable, "-m", "pgpulse", "collect"], env=env, cwd=tmp_path,
                                    stdout=out, stderr=subprocess.STDOUT)

    def spooled() -> list[str]:
        if not (spool_dir / FILE).exists():
            return []
        db = sqlite3.connect(spool_dir / FILE, timeout=60)
        try:
            return [r[0] for r in db.execute("SELECT time FROM snapshots")]
        finally:
            db.close()

    def in_transaction() -> bool:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpulse-collector' "
            "AND datname = current_database() AND state IN ('active', 'idle in transaction')"
        ).fetchone()
        return row[0] > 0

    first = start(tmp_path / "first.log")
    try:
        wait_for(lambda: len(stored(conn, host)) >= 3, 60, "the first snapshots")
        relay.cut()
        wait_for(lambda: len(spooled()) >= 15, 60, "a backlog in the spool")
        before_replay = len(stored(conn, host))
        relay.delay = 0.1  # every reply of the server is late: a flush takes a while
        relay.restore()
        wait_for(lambda: len(stored(conn, host)) >= before_replay + 2, 60, "the replay to start")
        # Inside a write while the backlog is still being replayed, not a live tick's.
        wait_for(lambda: len(spooled()) >= 3 and in_transaction(), 60, "the agent to be inside a replay")
        first.send_signal(signal.SIGKILL)
        assert first.wait(60) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    relay.delay = 0.0
    left_at_kill = spooled()
    assert left_at_kill, "the kill came after the flush: nothing was left to replay"

    second = start(tmp_path / "second.log")
    try:
        wait_for(lambda: not spooled() and len(stored(conn, host)) >= before_replay + len(left_at_kill), 60,
                 "the restarted agent to replay the spool")
        time.sleep(0.5)  # a few more live ticks
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert spooled() == [], "SIGTERM should flush the spool"

    acknowledged = set()
    for log in ("first.log", "second.log"):
        for line in (tmp_path / log).read_text().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("message") == "snapshot spooled":
                    acknowledged.add(datetime.fromisoformat(rec["snapshot_time"]))
    times = stored(conn, host)
    assert len(times) == len(set(times)), "a snapshot was stored twice"
    missing = acknowledged - set(times)
    assert not missing, f"acknowledged snapshots lost: {sorted(missing)}"
    # At most one snapshot was spooled but not yet logged when the kill came.
    assert len(set(times) - acknowledged) <= 1
    assert {datetime.fromisoformat(t) for t in left_at_kill} <= set(times)
