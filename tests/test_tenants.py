"""Tenants: the isolation matrix, X-Scope-OrgID, per-tenant limits, the admin API and CLI.

Two tenants, ``red`` and ``blue``, send the same metric names with the same labels
through every protocol (JSON ingest and snapshots, Prometheus remote write, OTLP,
Influx line protocol), each with values of its own (red 1, blue 2) and a few names
and label values only it has. Then every read path is asked with each tenant's key:
nothing of the other tenant may be seen, counted or named, whether by exact or
regular-expression matchers, discovery, export, the Prometheus API, remote read,
metadata, cardinality or error messages. Runs against the real PostgreSQL of the
suite; payloads are built with the protocols' own libraries (protobuf, cramjam).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import cramjam
import psycopg
import pytest
from flask.testing import FlaskClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from pgpulse.protocols.prompb import LabelMatcher, ReadRequest, ReadResponse, WriteRequest
from pgpulse.store.keys import create_key
from proxy import close_app, create_app

TENANTS = {"red": 1.0, "blue": 2.0}
RW = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
      "X-Prometheus-Remote-Write-Version": "0.1.0"}
RR = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
      "X-Prometheus-Remote-Read-Version": "0.1.0"}
ALL = '{__name__=~".+"}'


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


class World:
    def __init__(self, client: FlaskClient, admin: str, keys: dict[str, str], start: float) -> None:
        self.client = client
        self.admin = admin
        self.keys = keys
        self.start = start

    def get(self, tenant: str, path: str, **params):
        return self.client.get(path, query_string=params, headers=bearer(self.keys[tenant]))


def _write_everything(c: FlaskClient, tenant: str, key: str, value: float, at: float) -> None:
    h = bearer(key)
    r = c.post("/api/ingest", headers=h, json={"metrics": [
        {"name": "cpu_temp", "labels": {"host": "a", "zone": "x"}, "value": value, "timestamp": at},
        {"name": "cpu_temp", "labels": {"host": f"{tenant}-secret"}, "value": value, "timestamp": at},
        {"name": f"{tenant}_only", "labels": {"host": "a"}, "value": value, "timestamp": at},
    ]})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["series"] == 3

    req = WriteRequest()
    ts = req.timeseries.add()
    for name, v in (("__name__", "rw_metric"), ("job", "j")):
        ts.labels.add(name=name, value=v)
    ts.samples.add(value=value, timestamp=int(at * 1000))
    req.metadata.add(metric_family_name="rw_metric", type=1, help=f"help of {tenant}", unit="")
    r = c.post("/api/v1/write", data=snappy(req.SerializeToString()), headers={**RW, **h})
    assert r.status_code == 204, r.get_data(as_text=True)

    otlp = ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource={"attributes": [kv("service.name", "svc")]},
        scope_metrics=[pb.ScopeMetrics(metrics=[pb.Metric(name="otlp_metric", gauge=pb.Gauge(data_points=[
            pb.NumberDataPoint(time_unix_nano=int(at * 1e9), as_double=value)]))])])])
    r = c.post("/v1/metrics", data=otlp.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf", **h})
    assert r.status_code == 200, r.data

    r = c.post("/api/v2/write", query_string={"precision": "s"},
               data=f"influx_m,host=a f={value} {int(at)}\n", headers=h)
    assert r.status_code == 204, r.get_data(as_text=True)

    r = c.post("/api/ingest/snapshots", headers=h, json={"snapshots": [
        {"host": "common", "time": datetime.fromtimestamp(at, UTC).isoformat(),
         "data": {"load": {"load1": value}}},
        {"host": f"{tenant}box", "time": datetime.fromtimestamp(at, UTC).isoformat(),
         "data": {"load": {"load1": value}}}]})
    assert r.status_code == 200 and r.get_json()["inserted"] == 2, r.get_data(as_text=True)


@pytest.fixture(scope="module")
def world(module_db_url: str) -> Iterator[World]:
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        admin, _ = create_key(conn, "operator", ["admin"])
    app = create_app({"DATABASE_URL": module_db_url, "PGPULSE_AUTH": "on", "TESTING": True})
    c = app.test_client()
    keys = {}
    for tenant in TENANTS:
        r = c.post("/api/tenants", json={"id": tenant, "name": tenant.title()}, headers=bearer(admin))
        assert r.status_code == 201, r.get_data(as_text=True)
        r = c.post("/api/keys", json={"name": f"{tenant} app", "scopes": ["ingest", "query"]},
                   headers=bearer(admin, **{"X-Scope-OrgID": tenant}))
        assert r.status_code == 201 and r.get_json()["tenant"] == tenant, r.get_data(as_text=True)
        keys[tenant] = r.get_json()["key"]
    at = time.time() - 120
    for tenant, value in TENANTS.items():
        _write_everything(c, tenant, keys[tenant], value, at)
    try:
        yield World(c, admin, keys, at - 60)
    finally:
        close_app(app)


def other(tenant: str) -> str:
    return "blue" if tenant == "red" else "red"


TENANT_PARAMS = pytest.mark.parametrize("tenant", list(TENANTS))


@TENANT_PARAMS
def test_native_query_sees_only_own_values_even_by_regex(world, tenant):
    r = world.get(tenant, "/api/query", query=ALL, start=world.start, step="1m")
    assert r.status_code == 200, r.get_data(as_text=True)
    series = r.get_json()["series"]
    names = {s["name"] for s in series}
    assert f"{tenant}_only" in names and f"{other(tenant)}_only" not in names
    assert {"cpu_temp", "rw_metric", "influx_m_f"} <= names
    values = {p[1] for s in series for p in s["points"]}
    assert values == {TENANTS[tenant]}
    hosts = {s["labels"].get("host") for s in series}
    assert f"{other(tenant)}-secret" not in hosts


@TENANT_PARAMS
def test_discovery_and_cardinality_count_only_own_series(world, tenant):
    own = world.get(tenant, "/api/series").get_json()["series"]
    names = {s["name"] for s in own}
    assert f"{other(tenant)}_only" not in names and f"{tenant}_only" in names
    labels = world.get(tenant, "/api/labels").get_json()
    assert "zone" in json.dumps(labels)
    values = world.get(tenant, "/api/labels/host/values").get_json()["values"]
    assert f"{tenant}-secret" in values and f"{other(tenant)}-secret" not in values
    names = world.get(tenant, "/api/labels/__name__/values").get_json()["values"]
    assert f"{other(tenant)}_only" not in names
    card = world.get(tenant, "/api/cardinality").get_json()
    assert card["tenant"] == tenant and card["series"] == len(own)
    assert dict((m["name"], m["series"]) for m in card["metrics"])["cpu_temp"] == 2


@TENANT_PARAMS
def test_prometheus_api_is_confined(world, tenant):
    r = world.get(tenant, "/api/v1/query", query=ALL)
    result = r.get_json()["data"]["result"]
    assert result and {float(s["value"][1]) for s in result} == {TENANTS[tenant]}
    assert all(s["metric"]["__name__"] != f"{other(tenant)}_only" for s in result)
    r = world.get(tenant, "/api/v1/query", query="sum(cpu_temp)")
    assert float(r.get_json()["data"]["result"][0]["value"][1]) == 2 * TENANTS[tenant]
    r = world.get(tenant, "/api/v1/query", query=f"count({{host=~\"{other(tenant)}.*\"}})")
    assert r.get_json()["data"]["result"] == []
    series = world.get(tenant, "/api/v1/series", **{"match[]": ALL}).get_json()["data"]
    assert f"{other(tenant)}-secret" not in json.dumps(series)
    assert len(series) == len(world.get(tenant, "/api/series").get_json()["series"])
    values = world.get(tenant, "/api/v1/label/host/values").get_json()["data"]
    assert f"{other(tenant)}-secret" not in values and f"{tenant}-secret" in values
    names = world.get(tenant, "/api/v1/label/__name__/values").get_json()["data"]
    assert f"{other(tenant)}_only" not in names
    meta = world.get(tenant, "/api/v1/metadata").get_json()["data"]
    assert meta["rw_metric"][0]["help"] == f"help of {tenant}"


@TENANT_PARAMS
def test_remote_read_by_regex_is_confined(world, tenant):
    req = ReadRequest()
    q = req.queries.add(start_timestamp_ms=int(world.start * 1000), end_timestamp_ms=int(time.time() * 1000))
    q.matchers.add(name="__name__", type=LabelMatcher.RE, value=".+")
    r = world.client.post("/api/v1/read", data=snappy(req.SerializeToString()),
                          headers={**RR, **bearer(world.keys[tenant])})
    assert r.status_code == 200, r.data
    resp = ReadResponse()
    resp.ParseFromString(bytes(cramjam.snappy.decompress_raw(r.data)))
    series = resp.results[0].timeseries
    assert series
    assert {s.value for ts in series for s in ts.samples} == {TENANTS[tenant]}
    names = {lbl.value for ts in series for lbl in ts.labels if lbl.name == "__name__"}
    assert f"{other(tenant)}_only" not in names


@TENANT_PARAMS
def test_export_and_hosts_are_confined(world, tenant):
    r = world.get(tenant, "/api/export", query=ALL, start=world.start, format="csv")
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))[1:]
    assert table and {float(row[3]) for row in table} == {TENANTS[tenant]}
    hosts = [h["host"] for h in world.get(tenant, "/api/hosts").get_json()["hosts"]]
    assert sorted(hosts) == sorted(["common", f"{tenant}box"])
    r = world.get(tenant, "/api/hosts/query", field="load1", start=world.start, step="1m")
    assert r.status_code == 200, r.get_data(as_text=True)
    body = json.dumps(r.get_json())
    assert f"{other(tenant)}box" not in body
    r = world.get(tenant, "/api/export", source="hosts", start=world.start, format="json")
    docs = json.loads(r.get_data())
    assert {d["data"]["load"]["load1"] for d in docs} == {TENANTS[tenant]}
    assert {d["host"] for d in docs} == {"common", f"{tenant}box"}


def test_the_same_series_is_two_series_and_writes_stay_idempotent(world, module_db_url):
    with psycopg.connect(module_db_url) as conn:
        rows = conn.execute("SELECT tenant_id, count(*) FROM series WHERE name = 'cpu_temp' "
                            "AND labels = '{\"host\": \"a\", \"zone\": \"x\"}' GROUP BY 1").fetchall()
        assert dict(rows) == {"red": 1, "blue": 1}
        snaps = conn.execute("SELECT tenant_id, count(*) FROM system_metrics WHERE host = 'common' "
                             "GROUP BY 1").fetchall()
        assert dict(snaps) == {"red": 1, "blue": 1}
    # A replay stores nothing twice; a new value replaces (last write wins), in its tenant only.
    at = world.start + 60
    r = world.client.post("/api/ingest", headers=bearer(world.keys["red"]), json={"metrics": [
        {"name": "cpu_temp", "labels": {"host": "a", "zone": "x"}, "value": 5.0, "timestamp": at}]})
    assert r.status_code == 200 and r.get_json()["series"] == 1
    got = world.get("red", "/api/v1/query", query='cpu_temp{zone="x"}').get_json()["data"]["result"]
    assert [float(s["value"][1]) for s in got] == [5.0]
    got = world.get("blue", "/api/v1/query", query='cpu_temp{zone="x"}').get_json()["data"]["result"]
    assert [float(s["value"][1]) for s in got] == [2.0]
    # Restore red's value for the other tests of the module.
    world.client.post("/api/ingest", headers=bearer(world.keys["red"]), json={"metrics": [
        {"name": "cpu_temp", "labels": {"host": "a", "zone": "x"}, "value": 1.0, "timestamp": at}]})


def test_a_key_cannot_name_another_tenant_and_learns_nothing_of_it(world):
    red = world.keys["red"]
    for named in ("blue", "no-such-tenant"):
        r = world.client.get("/api/series", headers=bearer(red, **{"X-Scope-OrgID": named}))
        assert r.status_code == 403
        assert named not in r.get_json()["error"]
    same = [world.client.get("/api/series", headers=bearer(red, **{"X-Scope-OrgID": n})).get_json()
            for n in ("blue", "no-such-tenant")]
    assert same[0] == same[1]
    r = world.client.get("/api/series", headers=bearer(red, **{"X-Scope-OrgID": "red"}))
    assert r.status_code == 200
    r = world.client.get("/api/series", headers=bearer(red, **{"X-Scope-OrgID": "Not A Slug"}))
    assert r.status_code == 400 and "X-Scope-OrgID" in r.get_json()["error"]
    # A tenant's key manages nothing: keys and tenants are the admin's.
    assert world.client.get("/api/tenants", headers=bearer(red)).status_code == 403
    assert world.client.get("/api/keys", headers=bearer(red)).status_code == 403


def test_an_admin_key_acts_for_the_tenant_it_names(world):
    admin = world.admin
    r = world.client.get("/api/v1/query", query_string={"query": "sum(cpu_temp)"},
                         headers=bearer(admin, **{"X-Scope-OrgID": "blue"}))
    assert float(r.get_json()["data"]["result"][0]["value"][1]) == 4.0
    r = world.client.get("/api/v1/query", query_string={"query": "sum(cpu_temp)"}, headers=bearer(admin))
    assert r.get_json()["data"]["result"] == []  # the default tenant has no data here
    r = world.client.get("/api/series", headers=bearer(admin, **{"X-Scope-OrgID": "nope"}))
    assert r.status_code == 404 and "nope" in r.get_json()["error"]
    keys = world.client.get("/api/keys", headers=bearer(admin, **{"X-Scope-OrgID": "red"})).get_json()["keys"]
    assert [k["tenant"] for k in keys] == ["red"]


def test_cardinality_limits_are_per_tenant_and_their_refusal_counts_only_the_tenant(world, module_db_url):
    admin = bearer(world.admin)
    own = world.get("red", "/api/cardinality").get_json()["series"]
    r = world.client.patch("/api/tenants/red", json={"max_series": own}, headers=admin)
    assert r.status_code == 200 and r.get_json()["max_series"] == own
    try:
        assert world.get("red", "/api/cardinality").get_json()["limit"] == own
        r = world.client.post("/api/ingest", headers=bearer(world.keys["red"]), json={"metrics": [
            {"name": "brand_new", "labels": {}, "value": 1}]})
        assert r.status_code == 429
        body = r.get_json()
        assert body["current"] == own and body["limit"] == own
        assert "blue" not in json.dumps(body)
        r = world.client.post("/api/ingest", headers=bearer(world.keys["blue"]), json={"metrics": [
            {"name": "brand_new", "labels": {}, "value": 1}]})
        assert r.status_code == 200
    finally:
        r = world.client.patch("/api/tenants/red", json={"max_series": None}, headers=admin)
        assert r.status_code == 200 and r.get_json()["max_series"] is None
    with psycopg.connect(module_db_url) as conn:
        actions = [a for (a,) in conn.execute(
            "SELECT action FROM audit_log WHERE target = 'tenant:red' ORDER BY id").fetchall()]
    assert actions == ["tenant.create", "tenant.update", "tenant.update"]


def test_tenant_admin_api_refuses_bad_input_and_busy_deletes(world):
    admin = bearer(world.admin)
    r = world.client.post("/api/tenants", json={"id": "Bad Id"}, headers=admin)
    assert r.status_code == 400 and "tenant id" in r.get_json()["error"]
    r = world.client.post("/api/tenants", json={"id": "red"}, headers=admin)
    assert r.status_code == 409
    r = world.client.post("/api/tenants", json={"id": "x1", "max_series": -3}, headers=admin)
    assert r.status_code == 400 and r.get_json()["field"] == "max_series"
    r = world.client.patch("/api/tenants/blue", json={"max_series": 2**40}, headers=admin)
    assert r.status_code == 400 and r.get_json()["field"] == "max_series"
    r = world.client.patch("/api/tenants/blue", json={"monthly_sample_quota": 2**40}, headers=admin)
    assert r.status_code == 200 and r.get_json()["monthly_sample_quota"] == 2**40
    r = world.client.patch("/api/tenants/blue", json={"name": None}, headers=admin)
    assert r.status_code == 400 and r.get_json()["field"] == "name"
    assert world.client.patch("/api/tenants/nope", json={"name": "N"}, headers=admin).status_code == 404
    r = world.client.delete("/api/tenants/red", headers=admin)
    assert r.status_code == 409
    r = world.client.delete("/api/tenants/default", headers=admin)
    assert r.status_code == 409
    assert world.client.post("/api/tenants", json={"id": "empty"}, headers=admin).status_code == 201
    assert world.client.delete("/api/tenants/empty", headers=admin).status_code == 200
    assert world.client.get("/api/tenants/empty", headers=admin).status_code == 404
    listed = {t["id"]: t for t in world.client.get("/api/tenants", headers=admin).get_json()["tenants"]}
    assert set(listed) >= {"default", "red", "blue"} and listed["red"]["keys"] == 1


def test_readings_and_etl_runs_of_another_tenant_are_not_listed(world):
    r = world.get("red", "/api/reading")
    assert r.status_code == 200 and r.get_json()["readings"] == []
    r = world.get("red", "/api/sync/runs")
    assert r.status_code == 200 and r.get_json()["runs"] == []


def test_single_user_install_sees_the_default_tenant(client, db_url):
    """Auth off, no header: everything lands in and is read from the default tenant."""
    r = client.post("/api/ingest", json={"metrics": [{"name": "m", "labels": {}, "value": 1}]})
    assert r.status_code == 200
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT tenant_id FROM series").fetchall() == [("default",)]
    assert client.get("/api/series").get_json()["series"][0]["name"] == "m"


def test_cli_creates_lists_and_keys_a_tenant(db_url, tmp_path):
    env = {**os.environ, "DATABASE_URL": db_url}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pgpulse", *args], env=env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    made = run("tenants", "create", "acme", "--name", "Acme", "--max-series", "100")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["max_series"] == 100
    again = run("tenants", "create", "acme")
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run("tenants", "create", "Not-A-Slug")
    assert bad.returncode == 2 and "tenant id" in bad.stderr
    key = run("keys", "create", "grafana", "--scope", "query", "--tenant", "acme")
    assert key.returncode == 0, key.stderr
    unknown = run("keys", "create", "x", "--scope", "query", "--tenant", "nope")
    assert unknown.returncode == 2 and "no tenant" in unknown.stderr
    listed = run("tenants", "list", "--json")
    rows = {t["id"]: t for t in json.loads(listed.stdout)}
    assert rows["acme"]["keys"] == 1 and rows["acme"]["max_series"] == 100
    cleared = run("tenants", "set", "acme", "--max-series", "none")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["max_series"] is None
    busy = run("tenants", "delete", "acme")
    assert busy.returncode == 1 and "still owns" in busy.stderr
    with psycopg.connect(db_url) as conn:
        acts = conn.execute("SELECT action, outcome FROM audit_log WHERE target = 'tenant:acme' "
                            "ORDER BY id").fetchall()
    assert acts == [("tenant.create", "ok"), ("tenant.create", "refused"), ("tenant.update", "ok"),
                    ("tenant.delete", "refused")]


def test_host_rollups_never_mix_two_tenants_hosts(conn):
    """The 5m/1h host tiers are keyed by host name: a name two tenants share is never
    served to either from them; a host of one tenant is served to it alone."""
    from datetime import timedelta

    from pgpulse.reads import read_host_field
    from pgpulse.tiers import Retention

    conn.execute("INSERT INTO tenants (id, name) VALUES ('red', 'Red'), ('blue', 'Blue')")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    conn.execute(
        "INSERT INTO system_metrics (tenant_id, time, host, data) "
        "SELECT tenant, t, h, jsonb_build_object('load', jsonb_build_object('load1', v)) "
        "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '1 minute') t, "
        "(VALUES ('red', 'common', 1), ('blue', 'common', 2), ('red', 'redbox', 1), "
        "('blue', 'bluebox', 2)) AS x(tenant, h, v)",
        (start, end))
    conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')")
    short = Retention(raw=timedelta(days=1), m5=timedelta(days=3), h1=timedelta(days=10))
    for tenant, value in TENANTS.items():
        hourly = read_host_field(conn, None, "load1", start, end, timedelta(hours=1), "avg", short,
                                 tenant=tenant)
        assert hourly.tier == "1h" and set(hourly.points) == {f"{tenant}box"}
        assert {v for _, v in hourly.points[f"{tenant}box"]} == {value}
        raw = read_host_field(conn, None, "load1", start, end, timedelta(minutes=1), "avg", short,
                              tenant=tenant)
        assert set(raw.points) == {"common", f"{tenant}box"}
        assert {v for _, v in raw.points["common"]} == {value}
