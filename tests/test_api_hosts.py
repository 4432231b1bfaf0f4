"""GET /api/hosts and GET /api/hosts/query over host snapshots (real PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from proxy_helpers import assert_error


def post(client, host, t, cpu):
    r = client.post("/api/ingest/snapshots", json={"snapshots": [
        {"host": host, "time": datetime.fromtimestamp(t, UTC).isoformat(), "data": {"cpu": {"percent": cpu}}}]})
    assert r.status_code == 200


def test_hosts_and_field_query(client):
    base = (int(time.time()) // 3600 - 1) * 3600
    for i in range(6):
        post(client, "web1", base + i * 10, 10 * i)
        post(client, "web2", base + i * 10, 1)
    r = client.get("/api/hosts")
    assert [h["host"] for h in r.json["hosts"]] == ["web1", "web2"]
    assert r.json["hosts"][0]["last_seen"].startswith(datetime.fromtimestamp(base + 50, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    r = client.get("/api/hosts/query", query_string={
        "field": "cpu_percent", "host": "web1", "start": base, "end": base + 60, "step": "60s", "agg": "max"})
    assert r.status_code == 200
    assert r.json["tier"] == "raw"
    assert r.json["series"] == [{"name": "cpu_percent", "labels": {"host": "web1"}, "points": [[base, 50.0]]}]
    r = client.get("/api/hosts/query", query_string={
        "field": "cpu_percent", "start": base, "end": base + 60, "step": "60s", "agg": "avg"})
    assert {s["labels"]["host"]: s["points"][0][1] for s in r.json["series"]} == {"web1": 25.0, "web2": 1.0}


def test_bad_host_query_parameters(client):
    assert assert_error(client.get("/api/hosts/query?field=nope"), 400)["parameter"] == "field"
    assert_error(client.get("/api/hosts/query"), 400)
    assert assert_error(client.get("/api/hosts/query?field=load1&agg=rate"), 400)["parameter"] == "agg"
    assert assert_error(client.get("/api/hosts/query?field=load1&start=x"), 400)["parameter"] == "start"
