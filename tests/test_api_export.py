"""GET /api/export: streamed JSON, NDJSON and CSV of samples and host snapshots (real PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime

import pytest
from proxy_helpers import assert_error


@pytest.fixture
def seeded(make_app):
    # A tiny itersize, so the export really walks its server-side cursor in many fetches.
    c = make_app(PROXY_EXPORT_ITERSIZE="7").test_client()
    base = time.time() - 3000
    c.post("/api/ingest", json={"metrics": [
        {"name": "m", "labels": {"host": h}, "value": i + 0.5, "timestamp": base + i}
        for h in ("a", "b") for i in range(1500)]})
    c.post("/api/ingest/snapshots", json={"snapshots": [
        {"host": "web1", "time": datetime.fromtimestamp(base + i, UTC).isoformat(),
         "data": {"cpu": {"percent": i}, "note": "x,\"y\""}} for i in range(20)]})
    return c, base


def test_formats_stream_every_sample(seeded):
    c, base = seeded
    params = {"query": 'm{host="a"}', "start": base - 1}
    r = c.get("/api/export", query_string={**params, "format": "json"})
    assert r.status_code == 200 and r.is_streamed
    rows = json.loads(r.get_data())
    assert len(rows) == 1500
    assert rows[0]["name"] == "m" and rows[0]["labels"] == {"host": "a"} and rows[0]["value"] == 0.5
    assert datetime.fromisoformat(rows[1]["time"]).timestamp() == pytest.approx(base + 1, abs=1e-5)

    r = c.get("/api/export", query_string={**params, "format": "ndjson"})
    assert r.mimetype == "application/x-ndjson"
    lines = r.get_data().splitlines()
    assert len(lines) == 1500 and json.loads(lines[-1])["value"] == 1499.5

    r = c.get("/api/export", query_string={"query": "m", "start": base - 1, "format": "csv"})
    assert r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert table[0] == ["time", "name", "labels", "value"]
    assert len(table) == 3001
    assert json.loads(table[1][2]) == {"host": "a"} and float(table[1][3]) == 0.5


def test_empty_export_is_valid(seeded):
    c, _ = seeded
    r = c.get("/api/export", query_string={"query": "nothing", "format": "json"})
    assert json.loads(r.get_data()) == []


def test_host_snapshots(seeded):
    c, base = seeded
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "ndjson"})
    docs = [json.loads(line) for line in r.get_data().splitlines()]
    assert len(docs) == 20 and docs[3]["data"]["cpu"]["percent"] == 3 and docs[0]["host"] == "web1"
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "csv",
                                           "field": "cpu_percent", "host": "web1"})
    table = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert table[0] == ["time", "host", "field", "value"] and len(table) == 21
    assert table[5][1:] == ["web1", "cpu_percent", "4.0"]
    r = c.get("/api/export", query_string={"source": "hosts", "start": base - 1, "format": "json"})
    assert json.loads(r.get_data())[0]["data"]["note"] == 'x,"y"'


def test_bad_export_parameters(seeded):
    c, _ = seeded
    assert assert_error(c.get("/api/export?query=m&format=xml"), 400)["parameter"] == "format"
    assert assert_error(c.get("/api/export?query=m&source=logs"), 400)["parameter"] == "source"
    assert assert_error(c.get("/api/export"), 400)["parameter"] == "query"
    assert assert_error(c.get("/api/export?source=hosts&field=nope"), 400)["parameter"] == "field"


def test_stream_releases_its_connection_when_closed_early(seeded):
    c, base = seeded
    from proxy.state import EXTENSION

    pool = c.application.extensions[EXTENSION].pool
    for _ in range(pool.max_size + 2):
        r = c.get("/api/export", query_string={"query": "m", "start": base - 1}, buffered=False)
        next(r.response)  # the first chunk only
        r.close()
    assert c.get("/api/series").status_code == 200  # the pool was not drained
