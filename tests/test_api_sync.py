"""/api/sync/...: running the ETL over HTTP, 409 on a concurrent run, 503 when
MongoDB is down or misconfigured (the rest of the proxy keeps working), the run
record, rejects and their replay.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines):
create_app(config, etl_source=...) gets the production MongoSource with mongomock's
client (etl_helpers.MockSource); the unreachable-server tests use the real pymongo
driver against a closed port. PostgreSQL is the real server.
"""

from __future__ import annotations

import psycopg
import pytest
from etl_helpers import (
    MockSource,
    closed_port,
    count,
    error_of,
    etl_settings,
    new_key,
    reading,
    statuses,
)

from etl import runs

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, etl_app


@pytest.mark.parametrize("method", ["get", "post"])
def test_run_answers_with_counts(etl_app, conn, readings, method):
    readings.insert_many([reading(i) for i in range(4)] + [reading(9, time="soon")])
    client = etl_app().test_client()
    r = getattr(client, method)("/api/sync/reading")
    assert r.status_code == 200, r.json
    body = r.json
    assert (body["status"], body["claimed"], body["loaded"], body["rejected"]) == ("succeeded", 5, 4, 1)
    assert body["duration_s"] >= 0 and body["trigger"] == "api"
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 4
    assert statuses(readings) == {"processed": 4, "rejected": 1}


def test_max_batches_parameter(etl_app, readings):
    readings.insert_many([reading(i) for i in range(5)])
    client = etl_app(ETL_BATCH_SIZE="2").test_client()
    body = client.post("/api/sync/reading?max_batches=1").json
    assert (body["claimed"], body["more"]) == (2, True)
    assert client.post("/api/sync/reading?max_batches=0").json["claimed"] == 3
    assert error_of(client.post("/api/sync/reading?max_batches=-1"), 400)["parameter"] == "max_batches"


def test_concurrent_run_is_409_with_the_running_id(etl_app, db_url, readings):
    readings.insert_one(reading(1))
    client = etl_app().test_client()
    running = "2b7e0a52-5d6f-4c1e-8f3a-9a1f1f0e7c44"
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (runs.LOCK_NAME,))
        other.execute("INSERT INTO etl_runs (id, trigger) VALUES (%s, 'schedule')", (running,))
        body = error_of(client.post("/api/sync/reading"), 409)
        assert body["running_run_id"] == running
        assert statuses(readings) == {"ingested": 1}
    assert client.post("/api/sync/reading").status_code == 200


def unreachable(**extra: str) -> dict[str, str]:
    return {"MONGO_URI": f"mongodb://etl:hunter2@127.0.0.1:{closed_port()}/",
            "MONGO_SERVER_SELECTION_TIMEOUT_MS": "300", "MONGO_CONNECT_TIMEOUT_MS": "300",
            **extra}


def test_unreachable_mongodb_is_503_recorded_and_nothing_partial(etl_app, conn):
    client = etl_app(mock=False, **unreachable()).test_client()
    body = error_of(client.post("/api/sync/reading"), 503)
    assert "is unreachable" in body["error"] and "hunter2" not in body["error"]
    runs_body = client.get("/api/sync/runs").json["runs"]
    assert [(r["status"], r["claimed"]) for r in runs_body] == [("failed", 0)]
    assert runs_body[0]["error"] == body["error"]
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 0
    assert count(conn, "SELECT count(*) FROM etl_rejects") == 0
    # The rest of the proxy is unaffected.
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/api/reading").status_code == 200


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://mongo:27017", "MONGO_URI: expected a URL starting with mongodb:// or mongodb+srv://"),
        ("mongodb://etl:pw@mongo:port/", "MONGO_URI cannot be used: Port contains non-digit characters"),
        (None, "the ETL is not configured: MONGO_URI is not set"),
    ],
)
def test_bad_or_missing_uri_is_a_clear_503_and_the_proxy_keeps_working(etl_app, conn, uri, message):
    app = etl_app(mock=False, MONGO_URI=uri)  # the app starts regardless
    client = app.test_client()
    assert message in error_of(client.post("/api/sync/reading"), 503)["error"]
    assert client.get("/health").status_code == 200
    assert client.get("/api/reading").json == {"readings": [], "next_cursor": None}
    assert client.get("/api/sync/runs").status_code == 200
    assert client.post("/api/ingest", json={"metrics": [{"name": "m", "value": 1}]}).status_code == 200


def test_runs_list_and_one_run(etl_app, readings):
    readings.insert_one(reading(1))
    client = etl_app().test_client()
    run_id = client.post("/api/sync/reading").json["run_id"]
    listed = client.get("/api/sync/runs?limit=5").json["runs"]
    assert listed[0]["id"] == run_id and listed[0]["loaded"] == 1
    one = client.get(f"/api/sync/runs/{run_id}").json
    assert one["status"] == "succeeded" and one["finished_at"]
    error_of(client.get("/api/sync/runs/6c1e2b55-0000-4000-8000-000000000000"), 404)
    error_of(client.get("/api/sync/runs/not-a-uuid"), 404)
    assert error_of(client.get("/api/sync/runs?limit=0"), 400)["parameter"] == "limit"
    assert error_of(client.get("/api/sync/runs?status=odd"), 400)["parameter"] == "status"
    assert client.get("/api/sync/runs?status=failed").json == {"runs": []}


def test_rejects_and_replay_over_http(etl_app, readings):
    bad = readings.insert_one(reading(1, time="later")).inserted_id
    client = etl_app().test_client()
    client.post("/api/sync/reading")
    rejects = client.get("/api/sync/rejects").json["rejects"]
    assert [r["mongo_id"] for r in rejects] == [str(bad)]
    assert "not an RFC 3339 time" in rejects[0]["reason"]

    readings.update_one({"_id": bad}, {"$set": {"time": "2026-11-20T12:00:00Z"}})
    r = client.post("/api/sync/rejects/replay", json={"ids": [rejects[0]["id"]]})
    assert r.status_code == 200, r.json
    assert r.json["rejects"] == [{"id": rejects[0]["id"], "mongo_id": str(bad), "outcome": "loaded"}]
    assert r.json["run"]["trigger"] == "replay" and r.json["run"]["loaded"] == 1
    assert client.get("/api/sync/rejects").json["rejects"] == []
    assert len(client.get("/api/sync/rejects?all=true").json["rejects"]) == 1
    # The replay is in the audit log, and so is one that found nothing open.
    error_of(client.post("/api/sync/rejects/replay", json={"all": True}), 400)
    logged = client.get("/api/audit?action=reject.replay").json["entries"]
    assert [(e["outcome"], e["actor"]) for e in logged] == [("refused", "anonymous"), ("ok", "anonymous")]
    assert logged[1]["details"]["ids"] == [rejects[0]["id"]] and logged[1]["details"]["loaded"] == 1
    assert logged[1]["details"]["run_id"] == r.json["run"]["run_id"]


@pytest.mark.parametrize(
    "body",
    [[1], {}, {"ids": []}, {"ids": ["1"]}, {"ids": [True]}, {"all": "yes"}, {"ids": [1], "all": True},
     {"ids": [1], "extra": 1}],
)
def test_replay_bad_bodies_are_400(etl_app, body):
    error_of(etl_app().test_client().post("/api/sync/rejects/replay", json=body), 400)


def test_replay_of_nothing_open_is_400(etl_app):
    body = error_of(etl_app().test_client().post("/api/sync/rejects/replay", json={"ids": [5]}), 400)
    assert "none of the named rejects is open" in body["error"]


def test_scopes(etl_app, db_url, readings):
    readings.insert_one(reading(1))
    client = etl_app(PGPULSE_AUTH="on").test_client()
    query, ingest, admin = (new_key(db_url, s) for s in ("query", "ingest", "admin"))

    def h(key):
        return {"Authorization": f"Bearer {key}"}

    error_of(client.post("/api/sync/reading"), 401)
    error_of(client.post("/api/sync/reading", headers=h(query)), 403)
    assert client.post("/api/sync/reading", headers=h(ingest)).status_code == 200
    assert client.get("/api/sync/runs", headers=h(query)).status_code == 200
    assert client.get("/api/reading", headers=h(query)).status_code == 200
    error_of(client.post("/api/sync/rejects/replay", json={"all": True}, headers=h(ingest)), 403)
    # admin passes the scope check; nothing is open, so the request itself is a 400.
    error_of(client.post("/api/sync/rejects/replay", json={"all": True}, headers=h(admin)), 400)


def test_routes_are_in_the_openapi_document(etl_app):
    paths = etl_app().test_client().get("/api/openapi.json").json["paths"]
    assert {"/api/sync/reading", "/api/sync/runs", "/api/sync/runs/{run_id}", "/api/sync/rejects",
            "/api/sync/rejects/replay", "/api/reading"} <= set(paths)
    assert set(paths["/api/sync/reading"]) == {"get", "post"}
    assert "409" in paths["/api/sync/reading"]["post"]["responses"]


def test_closing_the_app_closes_its_mongodb_client(db_url, readings, mongo):
    """The app's MongoDB client is released with the app (gunicorn worker exit, tests)."""
    from proxy import close_app, create_app

    closed = []

    class Recording:
        def __init__(self, client):
            self.client = client

        def __getitem__(self, name):
            return self.client[name]

        def __getattr__(self, name):
            return getattr(self.client, name)

        def close(self):
            closed.append(True)

    readings.insert_many([reading(i) for i in range(3)])
    app = create_app({"DATABASE_URL": db_url, "PGPULSE_AUTH": "off", "TESTING": True,
                      "MONGO_URI": "mongodb://mongo.invalid:27017"},
                     etl_source=MockSource(etl_settings(), Recording(mongo)))
    assert app.test_client().post("/api/sync/reading").status_code == 200
    close_app(app)
    assert closed == [True]


def test_the_app_keeps_no_copy_of_the_environment_and_no_secret(etl_app):
    """The ETL is built when the app is: the state has typed parts, and neither it nor
    app.config holds the MongoDB URI's password."""
    import dataclasses

    from proxy.state import EXTENSION

    app = etl_app(MONGO_URI="mongodb://etl:hunter2@mongo.test:27017/plant")
    state = app.extensions[EXTENSION]
    assert not hasattr(state, "environ") and not hasattr(state, "extras")
    assert state.etl is not None and state.etl.where == "mongo.test:27017/plant.readings"
    assert "MONGO_URI" not in app.config
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    assert "hunter2" not in repr({k: v for k, v in fields.items() if k != "etl"})


def test_an_empty_collection_is_named_in_the_answer(etl_app, mongo):
    body = etl_app(MONGO_URI="mongodb://mongo.test:27017/plant").test_client().post("/api/sync/reading").json
    assert (body["status"], body["claimed"]) == ("succeeded", 0)
    assert body["read_from"] == "mongo.test:27017/plant.readings"
    assert body["warning"] == "the collection 'readings' in database 'plant' at mongo.test:27017 does not exist"
