"""/health, /ready, /metrics, and a database that is down (503 JSON, never 500).

Real PostgreSQL; "down" is a port nobody listens on, or the server ending the
proxy's connections (pg_terminate_backend).
"""

from __future__ import annotations

import psycopg
from proxy_helpers import assert_error

from proxy import close_app, create_app


def test_health_ready_metrics(client):
    assert client.get("/health").json == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200 and r.json["status"] == "ready"
    client.post("/api/ingest", json={"metrics": [{"name": "m", "value": 1}]})
    text = client.get("/metrics").get_data(as_text=True)
    assert "pgpulse_proxy_requests_total" in text
    assert "pgpulse_proxy_request_duration_seconds_bucket" in text
    assert "pgpulse_proxy_samples_ingested_total" in text
    assert "pgpulse_proxy_series 1.0" in text


def test_ready_is_503_when_schema_is_behind(make_app, conn):
    app = make_app()
    conn.execute("UPDATE alembic_version SET version_num = 'older'")
    body = assert_error(app.test_client().get("/ready"), 503)
    assert body["revision"] == "older" and body["head"]


def test_unmigrated_database_is_not_ready_but_metrics_answer(empty_db_url):
    app = create_app({"DATABASE_URL": empty_db_url, "PGPULSE_AUTH": "off"})
    try:
        c = app.test_client()
        body = assert_error(c.get("/ready"), 503)
        assert body["revision"] is None
        assert c.get("/metrics").status_code == 200
    finally:
        close_app(app)


def test_database_down_gives_503_json():
    app = create_app({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
                      "PGPULSE_AUTH": "off", "PROXY_DB_TIMEOUT_SECONDS": "0.5"})
    try:
        c = app.test_client()
        assert c.get("/health").status_code == 200
        for r in (c.get("/ready"), c.get("/api/query?query=m"), c.get("/api/series"),
                  c.post("/api/ingest", json={"metrics": [{"name": "m", "value": 1}]}),
                  c.get("/api/export?query=m")):
            assert_error(r, 503)
        assert c.get("/metrics").status_code == 200  # still scrapable
    finally:
        close_app(app)


def test_connections_killed_by_the_server_are_replaced(make_app, db_url):
    c = make_app().test_client()
    assert c.get("/api/series").status_code == 200
    with psycopg.connect(db_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'pgpulse-proxy' AND datname = current_database()"
        ).fetchone()[0]
    assert killed >= 1
    # The pool finds the dead connections at checkout and replaces them.
    assert c.get("/api/series").status_code == 200
    assert c.get("/api/series").status_code == 200


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/nope"), 404)
    body = assert_error(client.delete("/api/ingest"), 405)
    assert "POST" in body["allowed"]


def test_client_chosen_methods_and_paths_do_not_grow_metrics(client):
    """Label values come from a closed set: random methods and paths land in `other`."""
    import random
    import re
    import string

    rng = random.Random(9)
    letters = string.ascii_uppercase

    def word(n: int) -> str:
        return "".join(rng.choice(letters) for _ in range(n))

    for i in range(2000):
        method = rng.choice(["GET", "POST", word(8), word(12).lower()])
        path = rng.choice(["/health", "/api/series", f"/{word(10)}", f"/api/{word(6)}/{i}"])
        client.open(path, method=method)

    text = client.get("/metrics").get_data(as_text=True)
    series = [line for line in text.splitlines()
              if line.startswith(("pgpulse_proxy_requests_total{",
                                  "pgpulse_proxy_request_duration_seconds_count{"))]
    methods = {m for line in series for m in re.findall(r'method="([^"]*)"', line)}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert 'method="other"' in text and 'route="other"' in text
    # Bounded by methods x routes x statuses, whatever the 2,000 requests were.
    assert len(series) < 300, len(series)
    assert len(text) < 300_000, len(text)
