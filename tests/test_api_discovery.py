"""GET /api/series, /api/labels, /api/labels/<name>/values (real PostgreSQL)."""

from __future__ import annotations

import pytest
from proxy_helpers import assert_error


@pytest.fixture
def seeded(client):
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "cpu_temp", "labels": {"host": "a", "zone": "x"}, "value": 1},
        {"name": "cpu_temp", "labels": {"host": "b"}, "value": 1},
        {"name": "disk_free", "labels": {"host": "a", "mount": "/"}, "value": 1, "type": "gauge"},
    ]})
    assert r.status_code == 200
    return client


def test_series(seeded):
    r = seeded.get("/api/series")
    assert [(s["name"], s["labels"]) for s in r.json["series"]] == [
        ("cpu_temp", {"host": "a", "zone": "x"}), ("cpu_temp", {"host": "b"}),
        ("disk_free", {"host": "a", "mount": "/"})]
    assert r.json["truncated"] is False
    r = seeded.get("/api/series", query_string={"match": 'cpu_temp{host=~"b|c"}'})
    assert [s["labels"] for s in r.json["series"]] == [{"host": "b"}]
    r = seeded.get("/api/series?limit=1")
    assert len(r.json["series"]) == 1 and r.json["truncated"] is True
    assert assert_error(seeded.get("/api/series", query_string={"match": "{"}), 400)["parameter"] == "match"
    assert_error(seeded.get("/api/series?limit=x"), 400)


def test_labels_and_values(seeded):
    assert seeded.get("/api/labels").json["labels"] == ["__name__", "host", "mount", "zone"]
    assert seeded.get("/api/labels?match=cpu_temp").json["labels"] == ["__name__", "host", "zone"]
    assert seeded.get("/api/labels/host/values").json["values"] == ["a", "b"]
    assert seeded.get("/api/labels/zone/values").json["values"] == ["x"]
    assert seeded.get("/api/labels/__name__/values").json["values"] == ["cpu_temp", "disk_free"]
    r = seeded.get("/api/labels/host/values", query_string={"match": "disk_free"})
    assert r.json["values"] == ["a"]
    assert seeded.get("/api/labels/nothing/values").json["values"] == []
    assert_error(seeded.get("/api/labels/bad-name/values"), 400)
    r = seeded.get("/api/labels/x'%3B drop table series/values")
    assert_error(r, 400)
