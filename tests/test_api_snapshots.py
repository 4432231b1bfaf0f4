"""POST /api/ingest/snapshots: the collector's http sink contract (real PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy_helpers import assert_error, new_key


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_snapshots_are_stored_and_replays_are_no_ops(client, conn):
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    body = {"snapshots": [
        {"host": "web1", "time": iso(t), "data": {"version": 1, "cpu": {"percent": 12.5}}},
        {"host": "web2", "time": iso(t), "data": {"version": 1, "cpu": {"percent": 50}}},
    ]}
    r = client.post("/api/ingest/snapshots", json=body)
    assert r.status_code == 200
    assert r.json == {"accepted": 2, "inserted": 2, "duplicates": 0}
    again = client.post("/api/ingest/snapshots", json=body)
    assert again.json == {"accepted": 2, "inserted": 0, "duplicates": 2}
    rows = conn.execute("SELECT host, time, data FROM system_metrics ORDER BY host").fetchall()
    assert [(h, tt, d["cpu"]["percent"]) for h, tt, d in rows] == [("web1", t, 12.5), ("web2", t, 50)]


def test_bad_snapshot_names_index_and_writes_nothing(client, conn):
    t = iso(datetime.now(UTC))
    for bad, field in [
        ({"host": "", "time": t, "data": {}}, "host"),
        ({"host": "h", "time": "yesterday", "data": {}}, "time"),
        ({"host": "h", "time": "1999-01-01T00:00:00Z", "data": {}}, "time"),
        ({"host": "h", "time": t, "data": []}, "data"),
        ({"host": "h", "time": t, "data": {"s": "a\x00"}}, "data"),
        ({"host": "h", "time": t, "data": {}, "extra": 1}, "extra"),
    ]:
        r = client.post("/api/ingest/snapshots", json={"snapshots": [
            {"host": "ok", "time": t, "data": {}}, bad]})
        body = assert_error(r, 400)
        assert body["index"] == 1 and body["field"] == field, body
    assert conn.execute("SELECT count(*) FROM system_metrics").fetchone()[0] == 0
    assert_error(client.post("/api/ingest/snapshots", json={"metrics": []}), 400)


def test_bearer_key_with_ingest_scope(make_app, db_url):
    app = make_app(PGPULSE_AUTH="on")
    c = app.test_client()
    body = {"snapshots": [{"host": "h", "time": iso(datetime.now(UTC)), "data": {}}]}
    assert_error(c.post("/api/ingest/snapshots", json=body), 401)
    query_key = new_key(db_url, "query")
    assert_error(c.post("/api/ingest/snapshots", json=body,
                        headers={"Authorization": f"Bearer {query_key}"}), 403)
    key = new_key(db_url, "ingest")
    r = c.post("/api/ingest/snapshots", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json["accepted"] == 1
