"""Citus: the portable engine distributed across a coordinator and workers answers as
one node does.

Runs only with ``PGPULSE_TEST_CITUS_URL`` (a database on a real Citus coordinator
with ``CREATE EXTENSION citus`` run and at least two workers added; docs/scaling.md);
deselected otherwise. The module migrates that database from nothing (revision 0009
distributes the tables) and feeds the same data through the API into it and into a
single-node database of the usual fixtures, then compares the answers of every read
endpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import orjson
import psycopg
import pytest
from psycopg import sql

from pgpulse import schema
from pgpulse.settings import load_core
from pgpulse.store import snapshots
from proxy import close_app, create_app

pytestmark = pytest.mark.citus

HOUR = 3600
REFRESH = "SELECT * FROM pgpulse_refresh_tiers(interval '1 hour', interval '14 days', interval '90 days')"


@pytest.fixture(scope="module")
def cluster_url(citus_url: str) -> str:
    schema.downgrade(citus_url, "base")
    schema.upgrade(citus_url, "portable")
    with psycopg.connect(citus_url) as conn:
        schema.configure(conn, load_core({}))
    return citus_url


def _app(url: str):
    return create_app({"DATABASE_URL": url, "PGPULSE_AUTH": "off", "TESTING": True})


def _feed(client, base: int) -> None:
    metrics = []
    for host, zone, k in (("a", "eu-1", 1), ("b", "eu-2", 10), ("c", "us-1", 100), ("d", "us-2", 0.1)):
        metrics += [{"name": "cpu_temp", "labels": {"host": host, "zone": zone}, "value": k * ((i * 7) % 13) / 3,
                     "timestamp": base + i * 10} for i in range(720)]
    metrics += [{"name": "reqs", "labels": {"host": "a"}, "value": i * 5.5, "type": "counter",
                 "timestamp": base + i * 10} for i in range(720)]
    for i in range(0, len(metrics), 1000):
        r = client.post("/api/ingest", json={"metrics": metrics[i:i + 1000]})
        assert r.status_code == 200, r.json
    shots = [{"host": f"h{n}", "time": base + i * 60,
              "data": {"cpu": {"percent": (i * n) % 97 / 1.7}, "load": {"load1": i % 5 / 3},
                       "memory": {"percent": 40 + n}}}
             for n in range(6) for i in range(120)]
    r = client.post("/api/ingest/snapshots", json={"snapshots": shots})
    assert r.status_code == 200, r.json


def _requests(base: int) -> list[tuple[str, dict]]:
    end = base + 2 * HOUR
    out: list[tuple[str, dict]] = []
    for step in ("60s", "300s", "3600s"):
        for agg in ("avg", "min", "max", "sum", "count", "last"):
            out.append(("/api/query", {"query": "cpu_temp", "start": base, "end": end, "step": step, "agg": agg}))
            out.append(("/api/hosts/query", {"field": "cpu_percent", "start": base, "end": end, "step": step,
                                             "agg": agg}))
        out.append(("/api/query", {"query": 'cpu_temp{zone=~"eu.*"}', "start": base, "end": end, "step": step,
                                   "agg": "avg", "by": "zone"}))
        out.append(("/api/query", {"query": "reqs", "start": base, "end": end, "step": step, "agg": "rate"}))
        out.append(("/api/hosts/query", {"field": "load1", "host": "h2", "start": base, "end": end,
                                         "step": step}))
        out.append(("/api/v1/query_range", {"query": "sum by (zone) (cpu_temp)", "start": base, "end": end,
                                            "step": step}))
        out.append(("/api/v1/query_range", {"query": "rate(reqs[5m])", "start": base, "end": end, "step": step}))
    out += [
        ("/api/hosts", {}),
        ("/api/series", {}),
        ("/api/labels", {}),
        ("/api/labels/host/values", {}),
        ("/api/cardinality", {}),
        ("/api/v1/series", {"match[]": "cpu_temp"}),
        ("/api/v1/labels", {}),
        ("/api/v1/label/zone/values", {}),
        ("/api/v1/query", {"query": "max_over_time(cpu_temp[1h])", "time": end}),
        ("/api/export", {"query": "cpu_temp", "start": base, "end": end, "format": "csv"}),
        ("/api/export", {"query": "reqs", "start": base, "end": end, "format": "ndjson"}),
        ("/api/export", {"source": "hosts", "start": base, "end": end, "format": "ndjson"}),
        ("/api/export", {"source": "hosts", "field": "cpu_percent", "start": base, "end": end, "format": "csv"}),
    ]
    return out


def _close(a, b) -> bool:
    """Equal, but for the last digits of floats (a sum adds in another order across shards)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _without_creation_times(value):
    """The answer without ``created_at``: when each database made its series."""
    if isinstance(value, dict):
        return {k: _without_creation_times(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_without_creation_times(v) for v in value]
    return value


def _parsed(body: bytes, mimetype: str):
    if "ndjson" in mimetype:
        return [orjson.loads(line) for line in body.splitlines() if line]
    if "json" in mimetype:
        return orjson.loads(body)
    return [[float(c) if c.replace(".", "", 1).replace("-", "", 1).isdigit() else c for c in line.split(",")]
            for line in body.decode().splitlines()]


@pytest.fixture(scope="module")
def both(cluster_url: str, module_db_url: str) -> Iterator[tuple]:
    base = (int(time.time()) // HOUR - 3) * HOUR
    apps = [_app(module_db_url), _app(cluster_url)]
    try:
        for app in apps:
            _feed(app.test_client(), base)
        for url in (module_db_url, cluster_url):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(REFRESH)
        yield apps[0].test_client(), apps[1].test_client(), base
    finally:
        for app in apps:
            close_app(app)


def test_the_layout_is_distributed_and_colocated(cluster_url):
    with psycopg.connect(cluster_url) as conn:
        rows = dict(conn.execute(
            "SELECT table_name::text, citus_table_type || ':' || distribution_column || ':' || colocation_id "
            "FROM citus_tables").fetchall())
    group = {k: v.split(":")[2] for k, v in rows.items()}
    for t in ("samples", "pgpulse_samples_5m_store", "pgpulse_samples_1h_store", "stale_markers"):
        assert rows[t].startswith("distributed:series_id:"), t
        assert group[t] == group["samples"], t
    for t in ("system_metrics", "pgpulse_system_metrics_5m_store", "pgpulse_system_metrics_1h_store"):
        assert rows[t].startswith("distributed:host:"), t
        assert group[t] == group["system_metrics"], t
    for t in ("series", "reading_analytics", "pgpulse_watermarks", "metric_metadata"):
        assert rows[t].startswith("reference:"), t
    assert "samples_default" in rows and any(t.startswith("samples_p") for t in rows)


def test_api_answers_equal_a_single_node(both):
    single, cluster, base = both
    identical, rounded, differ = 0, 0, []
    for path, params in _requests(base):
        a, b = single.get(path, query_string=params), cluster.get(path, query_string=params)
        assert a.status_code == 200, (path, params, a.get_data(as_text=True)[:300])
        assert b.status_code == a.status_code, (path, params, b.get_data(as_text=True)[:300])
        if a.data == b.data:
            identical += 1
        elif _close(*(_without_creation_times(_parsed(r.data, r.mimetype)) for r in (a, b))):
            rounded += 1
        else:
            differ.append((path, params))
    print(f"\n{identical} answers byte-identical, {rounded} equal but for float rounding")
    assert differ == []
    assert identical > rounded


def test_data_sits_on_every_worker(both, cluster_url):
    with psycopg.connect(cluster_url) as conn:
        workers = {r[0] for r in conn.execute("SELECT node_port FROM citus_get_active_worker_nodes()")}
        assert len(workers) >= 2
        holding = {r[0] for r in conn.execute(
            """
            SELECT DISTINCT n.nodeport FROM series s
            JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('samples', s.id)
            JOIN pg_dist_node n ON n.groupid = p.groupid
            """)}
        hosts = {r[0] for r in conn.execute(
            """
            SELECT DISTINCT n.nodeport FROM (SELECT DISTINCT host FROM system_metrics) h
            JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('system_metrics', h.host)
            JOIN pg_dist_node n ON n.groupid = p.groupid
            """)}
    assert holding == workers
    assert hosts == workers


def test_a_replayed_snapshot_batch_counts_nothing_new(cluster_url):
    shots = [{"host": "replayed", "time": time.time() - 60 - i, "data": {"cpu": {"percent": 1.0}}} for i in range(5)]
    with psycopg.connect(cluster_url) as conn:
        assert snapshots.write(conn, shots, tenant="default") == 5
        assert snapshots.write(conn, shots, tenant="default") == 0
        assert snapshots.write(conn, shots + [{"host": "replayed", "time": time.time() - 600,
                                               "data": {}}], tenant="default") == 1
        conn.rollback()


def test_a_new_partition_keeps_no_local_copy_on_the_coordinator(cluster_url):
    day = "2031-03-04"
    with psycopg.connect(cluster_url) as conn:
        conn.execute("INSERT INTO samples (time, series_id, value) VALUES (%s::timestamptz + interval '1 hour', 1, 2.5)",
                     (day,))
        made = conn.execute("SELECT pgpulse_ensure_partitions('samples', %s::timestamptz, "
                            "%s::timestamptz + interval '1 day')", (day, day)).fetchone()[0]
        assert made == 1
        part = sql.Identifier("samples_p20310304")
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(part)).fetchone()[0] == 1
        assert conn.execute("SELECT pg_relation_size('samples_p20310304')").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM samples_default WHERE time >= %s", (day,)).fetchone()[0] == 0
        conn.rollback()


def test_maintenance_and_the_reader_role_work_on_the_cluster(both, cluster_url):
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute("SELECT pgpulse_maintain(interval '14 days', interval '90 days', interval '365 days', "
                     "interval '7 days')")
    # Citus runs the shard queries as the caller, on the workers: Grafana logs in as a
    # member of the reader role (deploy/initdb), as here.
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute("""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_test_grafana') THEN
                CREATE ROLE pgpulse_test_grafana LOGIN;
              END IF;
            END $$""")
        # Again each run: a migration from nothing may have made the reader role anew.
        conn.execute("GRANT pgpulse_reader TO pgpulse_test_grafana")
        # Citus sends a role grant to the workers only for a role it created itself:
        # one made before the database was (another database's run) needs it there too.
        conn.execute("SELECT run_command_on_workers('GRANT pgpulse_reader TO pgpulse_test_grafana')")
    with psycopg.connect(cluster_url, user="pgpulse_test_grafana") as conn:
        for view in ("samples_5m", "samples_1h", "system_metrics_5m", "system_metrics_1h"):
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(view))).fetchone()[0] > 0
        conn.rollback()


def test_the_revision_is_reversible(cluster_url, both):
    schema.downgrade(cluster_url, "0008_audit")
    with psycopg.connect(cluster_url) as conn:
        assert conn.execute("SELECT count(*) FROM citus_tables").fetchone()[0] == 0
        assert "pgpulse_watermark(" in conn.execute("SELECT pg_get_viewdef('samples_5m')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%late_%'").fetchone()[0] == 3
        rows = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        assert rows > 0
    schema.upgrade(cluster_url, "portable")
    with psycopg.connect(cluster_url) as conn:
        assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == rows
        assert conn.execute("SELECT count(*) FROM citus_tables WHERE citus_table_type = 'distributed'"
                            ).fetchone()[0] > 7
