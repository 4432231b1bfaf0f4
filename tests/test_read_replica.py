"""Read replicas: with DATABASE_READ_URL the proxy's queries and exports read a
streaming replica while ingest writes to the primary, and ``pgpulse status`` shows
how far the replica is behind.

Two real PostgreSQL 15 clusters (Debian's binaries), the replica made with
``pg_basebackup -R`` and streaming from the primary, both started by this module.
Replay on the replica is paused and resumed (``pg_wal_replay_pause``) to show where
each request goes: a write the replica has not replayed is on the primary, and no
query sees it until replay resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
from pg_cluster import Cluster, free_port, make_subdir, wait_replayed, workdir
from polling import wait_for

from pgpulse import schema
from pgpulse.settings import load_core
from proxy import close_app, create_app


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    base = workdir()
    primary = Cluster(make_subdir(base, "primary"), free_port())
    replica = None
    try:
        primary.init()
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE pgpulse")
        schema.upgrade(primary.url("pgpulse"), "portable")
        with psycopg.connect(primary.url("pgpulse")) as conn:
            schema.configure(conn, load_core({}))
        replica = primary.replica(make_subdir(base, "replica"))
        yield primary, replica
    finally:
        try:
            if replica is not None:
                replica.stop()
        finally:
            primary.stop()
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def app(clusters):
    primary, replica = clusters
    app = create_app({"DATABASE_URL": primary.url("pgpulse"), "DATABASE_READ_URL": replica.url("pgpulse"),
                      "PGPULSE_AUTH": "off", "TESTING": True})
    yield app
    close_app(app)


def _ingest(client, name: str, value: float, at: float) -> None:
    r = client.post("/api/ingest", json={"metrics": [{"name": name, "labels": {"k": "v"}, "value": value,
                                                      "timestamp": at}]})
    assert r.status_code == 200, r.json


def _points(client, name: str, at: float) -> list:
    r = client.get("/api/query", query_string={"query": name, "start": at - 60, "end": at + 60, "step": "60s"})
    assert r.status_code == 200, r.json
    return [p for s in r.json["series"] for p in s["points"]]


def _status(primary: Cluster, replica: Cluster, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGPULSE_", "DATABASE_"))}
    env.update({"DATABASE_URL": primary.url("pgpulse"), "DATABASE_READ_URL": replica.url("pgpulse"),
                "PGPULSE_DATA_DIR": str(tmp_path), "LOG_FORMAT": "text"})
    proc = subprocess.run([sys.executable, "-m", "pgpulse", "status", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_queries_read_the_replica_and_writes_go_to_the_primary(clusters, app, tmp_path):
    primary, replica = clusters
    client = app.test_client()
    at = float(int(time.time()) - 120)
    with psycopg.connect(primary.url("pgpulse"), autocommit=True) as pconn, \
            psycopg.connect(replica.url("pgpulse"), autocommit=True) as rconn:
        assert rconn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        _ingest(client, "replicated_metric", 1.0, at)
        wait_replayed(pconn, rconn)
        assert [v for _, v in _points(client, "replicated_metric", at)] == [1.0]

        rconn.execute("SELECT pg_wal_replay_pause()")
        wait_for(lambda: rconn.execute("SELECT pg_get_wal_replay_pause_state() = 'paused'").fetchone()[0],
                 60, "replay to pause")
        try:
            _ingest(client, "paused_metric", 2.0, at)
            # Written on the primary...
            assert pconn.execute("SELECT count(*) FROM series WHERE name = 'paused_metric'").fetchone()[0] == 1
            # ...and not yet on the replica, which every query reads.
            assert _points(client, "paused_metric", at) == []
            r = client.get("/api/v1/series", query_string={"match[]": "paused_metric"})
            assert r.status_code == 200 and r.json["data"] == [], r.json
            r = client.get("/api/export", query_string={"query": "paused_metric", "start": at - 60,
                                                         "end": at + 60, "format": "csv"})
            assert r.status_code == 200 and "paused_metric" not in r.get_data(as_text=True)

            body = _status(primary, replica, tmp_path)
            assert body["replica"]["in_recovery"] is True
            assert body["replica"]["bytes_behind"] > 0
            assert body["replica"]["replay_delay_seconds"] >= 0
        finally:
            rconn.execute("SELECT pg_wal_replay_resume()")

        wait_for(lambda: _points(client, "paused_metric", at), 120, "the replica to replay the paused write")
        assert [v for _, v in _points(client, "paused_metric", at)] == [2.0]


def test_status_says_when_the_read_url_is_not_a_replica(clusters, tmp_path):
    primary, _replica = clusters
    body = _status(primary, primary, tmp_path)
    assert body["replica"]["in_recovery"] is False
    assert body["replica"]["bytes_behind"] is None
