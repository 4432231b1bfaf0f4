"""Cardinality limits on ingest (429 with counts) and GET /api/cardinality (real PostgreSQL)."""

from __future__ import annotations

from proxy_helpers import assert_error


def batch(name: str, n: int, offset: int = 0) -> dict:
    return {"metrics": [{"name": name, "labels": {"id": str(offset + i)}, "value": 1} for i in range(n)]}


def test_total_limit_rejects_the_whole_batch_with_counts(make_app, conn):
    c = make_app(PROXY_MAX_SERIES="10", PROXY_MAX_SERIES_PER_METRIC="10").test_client()
    assert c.post("/api/ingest", json=batch("a", 8)).status_code == 200
    r = c.post("/api/ingest", json=batch("b", 3))
    body = assert_error(r, 429)
    assert body["current"] == 8 and body["limit"] == 10 and body["new_series"] == 3
    assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 8
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 8
    # Samples of existing series still go in.
    r = c.post("/api/ingest", json=batch("a", 8))
    assert r.status_code == 200


def test_per_metric_limit_names_the_metric(make_app, conn):
    c = make_app(PROXY_MAX_SERIES="100", PROXY_MAX_SERIES_PER_METRIC="5").test_client()
    assert c.post("/api/ingest", json=batch("noisy", 5)).status_code == 200
    r = c.post("/api/ingest", json={"metrics": [
        {"name": "calm", "value": 1}, {"name": "noisy", "labels": {"id": "new"}, "value": 1}]})
    body = assert_error(r, 429)
    assert body["metric"] == "noisy" and body["current"] == 5 and body["limit"] == 5
    assert conn.execute("SELECT count(*) FROM series WHERE name = 'calm'").fetchone()[0] == 0


def test_cardinality_lists_top_metrics_and_labels(make_app):
    c = make_app().test_client()
    c.post("/api/ingest", json=batch("big", 20))
    c.post("/api/ingest", json={"metrics": [{"name": "small", "labels": {"host": "a"}, "value": 1}]})
    r = c.get("/api/cardinality")
    assert r.status_code == 200
    body = r.json
    assert body["series"] == 21 and body["limit"] == 10_000
    assert body["metrics"][0] == {"name": "big", "series": 20, "share": round(20 / 21, 4)}
    assert body["labels"][0] == {"name": "id", "series": 20, "values": 20}
    assert {"name": "host", "series": 1, "values": 1} in body["labels"]
    assert_error(c.get("/api/cardinality?limit=0"), 400)
