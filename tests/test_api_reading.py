"""GET /api/reading: loaded readings from PostgreSQL with filters (time range,
source, status, run) and keyset pagination by cursor.

Readings are loaded by the real ETL from mongomock (MongoDB cannot be installed on
the test machines; read through the production MongoSource, etl_helpers.MockSource);
PostgreSQL is real.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from etl_helpers import T0, error_of, reading
from hypothesis import given, settings
from hypothesis import strategies as st

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, etl_app


@pytest.fixture
def client(etl_app, readings):
    """30 readings one second apart from 3 sources, plus one reject, loaded by the ETL."""
    readings.insert_many([reading(i) for i in range(30)] + [reading(99, time="whenever")])
    c = etl_app().test_client()
    assert c.post("/api/sync/reading").json["loaded"] == 30
    return c


def iso(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def all_pages(client, **params) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        r = client.get("/api/reading", query_string=query)
        assert r.status_code == 200, r.json
        items += r.json["readings"]
        cursor, pages = r.json["next_cursor"], pages + 1
        if cursor is None:
            return items
        assert pages < 100


def test_one_reading(client):
    item = client.get("/api/reading?limit=1").json["readings"][0]
    assert item["status"] == "processed"
    assert item["reading_time"] == iso(0) and item["source_id"] == "dev-0"
    assert item["payload"]["temperature"] == 20.0 and item["payload"]["_id"] == {"$oid": item["mongo_id"]}
    assert item["run_id"] and item["synced_at"]


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_cover_everything_once_in_order(client, order):
    items = all_pages(client, limit=7, order=order)
    times = [i["reading_time"] for i in items]
    assert len(items) == 30 and len({i["id"] for i in items}) == 30
    assert times == sorted(times, reverse=order == "desc")


def test_pages_do_not_shift_when_readings_arrive(client, readings):
    first = client.get("/api/reading?limit=10").json
    readings.insert_many([reading(i, time=T0 - timedelta(hours=1)) for i in range(5)])  # earlier times
    client.post("/api/sync/reading")
    second = client.get("/api/reading", query_string={"limit": 10, "cursor": first["next_cursor"]}).json
    assert second["readings"][0]["reading_time"] == iso(10)


def test_filters(client):
    window = all_pages(client, start=iso(5), end=iso(15))
    assert [i["reading_time"] for i in window] == [iso(s) for s in range(5, 15)]
    unix = all_pages(client, start=str(int((T0 + timedelta(seconds=28)).timestamp())))
    assert len(unix) == 2
    dev1 = all_pages(client, source="dev-1", limit=4)
    assert len(dev1) == 10 and {i["source_id"] for i in dev1} == {"dev-1"}
    two = client.get("/api/reading?source=dev-1&source=dev-2&limit=100").json["readings"]
    assert len(two) == 20
    assert client.get("/api/reading?source=nobody").json == {"readings": [], "next_cursor": None}
    run_id = two[0]["run_id"]
    assert len(all_pages(client, run_id=run_id)) == 30


def test_rejected_status_lists_open_rejects(client):
    items = client.get("/api/reading?status=rejected").json["readings"]
    assert len(items) == 1
    assert items[0]["status"] == "rejected" and "'whenever'" in items[0]["reason"]
    assert items[0]["payload"]["time"] == "whenever" and items[0]["source_id"] == "dev-0"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("cursor=garbage!", "cursor"),
        ("cursor=" + base64.urlsafe_b64encode(b'{"s":"processed"}').decode(), "cursor"),
        ("start=yesterday", "start"),
        ("start=2026-11-20T12:00:10Z&end=2026-11-20T12:00:00Z", "end"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("status=lost", "status"),
        ("order=sideways", "order"),
        ("run_id=42", "run_id"),
    ],
)
def test_bad_parameters_are_400(client, query, parameter):
    assert error_of(client.get(f"/api/reading?{query}"), 400).get("parameter") == parameter


def test_cursor_belongs_to_its_status_and_order(client):
    cursor = client.get("/api/reading?limit=2").json["next_cursor"]
    body = error_of(client.get(f"/api/reading?cursor={cursor}&order=desc"), 400)
    assert "belongs to status=processed, order=asc" in body["error"]


_params = st.dictionaries(
    st.sampled_from(["start", "end", "source", "status", "order", "limit", "cursor", "run_id", "x"]),
    st.one_of(st.text(max_size=16), st.sampled_from(["processed", "rejected", "desc", "0", "1000", "1e3",
                                                     "2026-11-20T12:00:00Z", "-1", "nan"])),
    max_size=5)


def test_any_parameters_are_200_or_a_json_400(client):
    @settings(max_examples=150, deadline=None)
    @given(params=_params)
    def check(params):
        r = client.get("/api/reading", query_string=params)
        assert r.status_code in (200, 400), (params, r.data[:200])
        if r.status_code == 400:
            assert isinstance(r.get_json().get("error"), str)

    check()
