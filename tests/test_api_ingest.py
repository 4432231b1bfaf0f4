"""POST /api/ingest (and /v1/ingest): writes, validation, atomicity, idempotency, gzip.

Runs against the real PostgreSQL of the test suite; no stand-ins.
"""

from __future__ import annotations

import gzip
import math
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_helpers import assert_error, sample


def counts(conn) -> tuple[int, int]:
    return (conn.execute("SELECT count(*) FROM series").fetchone()[0],
            conn.execute("SELECT count(*) FROM samples").fetchone()[0])


def test_batch_is_written_with_series_created_once(client, conn):
    t = time.time() - 60
    batch = [{"name": "cpu_temp", "labels": {"host": h}, "value": i, "timestamp": t + i}
             for h in ("a", "b") for i in range(50)]
    r = client.post("/api/ingest", json={"metrics": batch})
    assert r.status_code == 200, r.json
    assert r.json == {"accepted": 100, "series": 2}
    assert counts(conn) == (2, 100)
    # A second batch of the same series reuses them.
    r = client.post("/v1/ingest", json={"metrics": [sample(host="a", value=7.5)]})
    assert r.status_code == 200
    assert counts(conn) == (2, 101)
    row = conn.execute(
        "SELECT s.value, se.labels FROM samples s JOIN series se ON se.id = s.series_id "
        "WHERE s.value = 7.5"
    ).fetchone()
    assert row == (7.5, {"host": "a"})


def test_timestamps_rfc3339_unix_and_default_now(client, conn):
    now = time.time()
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "m", "value": 1, "timestamp": "2000-01-01T00:00:00Z"},
    ]})
    assert_error(r, 400)  # far outside the window
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 120)) + ".250+00:00"
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "m", "labels": {"k": "iso"}, "value": 1, "timestamp": iso},
        {"name": "m", "labels": {"k": "unix"}, "value": 2, "timestamp": now - 60},
        {"name": "m", "labels": {"k": "none"}, "value": 3},
    ]})
    assert r.status_code == 200, r.json
    rows = dict(conn.execute(
        "SELECT se.labels ->> 'k', extract(epoch FROM s.time) FROM samples s "
        "JOIN series se ON se.id = s.series_id").fetchall())
    assert float(rows["iso"]) == pytest.approx(math.floor(now - 120) + 0.25, abs=1e-6)
    assert float(rows["unix"]) == pytest.approx(now - 60, abs=1e-5)
    assert float(rows["none"]) == pytest.approx(time.time(), abs=5)


def test_counter_type_and_conflict(client, conn):
    r = client.post("/api/ingest", json={"metrics": [{"name": "reqs", "value": 1, "type": "counter"}]})
    assert r.status_code == 200
    assert conn.execute("SELECT type FROM series").fetchone()[0] == "counter"
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "ok", "value": 1}, {"name": "reqs", "value": 2, "type": "gauge"}]})
    body = assert_error(r, 409)
    assert body["index"] == 1 and body["series_type"] == "counter"
    assert counts(conn) == (1, 1)  # the "ok" series of the refused batch was not kept


@pytest.mark.parametrize(
    ("bad", "field", "reason"),
    [
        ({"name": "1bad", "value": 1}, "name", "invalid_name"),
        ({"name": "a-b", "value": 1}, "name", "invalid_name"),
        ({"name": "", "value": 1}, "name", "invalid_name"),
        ({"name": 5, "value": 1}, "name", "invalid_name"),
        ({"name": "m", "value": "1"}, "value", "invalid_value"),
        ({"name": "m", "value": True}, "value", "invalid_value"),
        ({"name": "m", "value": None}, "value", "invalid_value"),
        ({"name": "m", "value": 1, "labels": {"bad-name": "x"}}, "labels", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {"__x": "x"}}, "labels", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {"k": 1}}, "labels.k", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {"k": ["x"]}}, "labels.k", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {"k": "a\x00b"}}, "labels.k", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {"k": "x" * 2000}}, "labels.k", "invalid_labels"),
        ({"name": "m", "value": 1, "labels": {f"l{i}": "v" for i in range(40)}}, "labels", "too_many_labels"),
        ({"name": "m", "value": 1, "labels": ["a"]}, "labels", "invalid_labels"),
        ({"name": "m", "value": 1, "timestamp": "yesterday"}, "timestamp", "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": 1e300}, "timestamp", "invalid_timestamp"),
        ({"name": "m", "value": 1, "timestamp": time.time() + 3600}, "timestamp", "out_of_window"),
        ({"name": "m", "value": 1, "timestamp": 100}, "timestamp", "out_of_window"),
        ({"name": "m", "value": 1, "type": "histogram"}, "type", "invalid"),
        ({"name": "m", "value": 1, "timestmap": 1}, "timestmap", "invalid"),
        ("not an object", None, "invalid"),
    ],
)
def test_bad_sample_names_index_and_field_and_writes_nothing(client, conn, bad, field, reason):
    good = [sample(host="a"), sample(host="b")]
    r = client.post("/api/ingest", json={"metrics": [*good, bad, bad]})
    body = assert_error(r, 400)
    assert body["index"] == 2
    assert body["field"] == field
    assert body["reason"] == reason
    assert body["invalid_count"] == 2 and body["total"] == 4
    assert "metrics[2]" in body["error"]
    assert counts(conn) == (0, 0)  # atomic: the good samples were not written either


def test_duplicate_sample_in_batch_is_refused(client, conn):
    t = time.time()
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "m", "value": 1, "timestamp": t}, {"name": "m", "value": 2, "timestamp": t}]})
    body = assert_error(r, 400)
    assert body["reason"] == "duplicate" and body["index"] == 1
    assert counts(conn) == (0, 0)
    # Same series without timestamps: both would be "now".
    r = client.post("/api/ingest", json={"metrics": [sample(), sample()]})
    assert assert_error(r, 400)["reason"] == "duplicate"


def test_label_order_does_not_make_a_new_series(client, conn):
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "m", "labels": {"a": "1", "b": "2"}, "value": 1, "timestamp": time.time() - 2},
        {"name": "m", "labels": {"b": "2", "a": "1"}, "value": 2, "timestamp": time.time() - 1}]})
    assert r.status_code == 200
    assert counts(conn) == (1, 2)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"metrics": {}}', b'{"metrics": "x"}', b'{"nope": []}', b"null",
     b'{"metrics": [{"name": "m", "value": NaN}]}', b'{"metrics": [{"name": "m", "value": Infinity}]}',
     b'{"metrics": [{"name": "m", "value": 1e400}]}', b'{"metrics": [{"name": "\xff\xfe", "value": 1}]}',
     b"\x00\x01\x02"],
)
def test_malformed_bodies_get_400(client, conn, body):
    r = client.post("/api/ingest", data=body, content_type="application/json")
    assert_error(r, 400)
    assert counts(conn) == (0, 0)


def test_empty_batch_is_accepted_as_nothing(client, conn):
    r = client.post("/api/ingest", json={"metrics": []})
    assert r.status_code == 200 and r.json["accepted"] == 0


def test_huge_integer_value_is_stored_as_float(client, conn):
    r = client.post("/api/ingest", data=b'{"metrics": [{"name": "m", "value": 18446744073709551615}]}',
                    content_type="application/json")
    assert r.status_code == 200
    assert conn.execute("SELECT value FROM samples").fetchone()[0] == pytest.approx(1.8446744073709552e19)


def test_sql_and_regex_metacharacters_are_data(client, conn):
    value = "'); DROP TABLE samples; -- .*[(\\"
    r = client.post("/api/ingest", json={"metrics": [{"name": "m", "labels": {"q": value}, "value": 1}]})
    assert r.status_code == 200
    assert conn.execute("SELECT labels ->> 'q' FROM series").fetchone()[0] == value


def test_gzip_body(client, conn):
    payload = orjson.dumps({"metrics": [sample(host=str(i)) for i in range(100)]})
    r = client.post("/api/ingest", data=gzip.compress(payload),
                    headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.json
    assert counts(conn) == (100, 100)


def test_gzip_bomb_is_413_and_bad_gzip_400(make_app, conn):
    app = make_app(PROXY_MAX_BODY_BYTES="100000")
    c = app.test_client()
    bomb = gzip.compress(b'{"metrics": [' + b" " * 10_000_000 + b"]}")
    assert len(bomb) < 100_000
    body = assert_error(c.post("/api/ingest", data=bomb, headers={"Content-Encoding": "gzip"}), 413)
    assert body["limit_bytes"] == 100000
    assert_error(c.post("/api/ingest", data=b"not gzip", headers={"Content-Encoding": "gzip"}), 400)
    assert_error(c.post("/api/ingest", data=b"{}", headers={"Content-Encoding": "br"}), 415)
    assert counts(conn) == (0, 0)


def test_body_and_sample_count_limits(make_app, conn):
    app = make_app(PROXY_MAX_BODY_BYTES="2000", PROXY_MAX_SAMPLES_PER_REQUEST="3")
    c = app.test_client()
    r = c.post("/api/ingest", json={"metrics": [sample(host="x" * 3000)]})
    assert assert_error(r, 413)["limit_bytes"] == 2000
    r = c.post("/api/ingest", json={"metrics": [sample(host=str(i)) for i in range(4)]})
    body = assert_error(r, 413)
    assert body["count"] == 4 and body["limit"] == 3
    assert counts(conn) == (0, 0)


def test_idempotency_key_replay_is_a_no_op(client, conn):
    batch = {"metrics": [sample(host="a", value=1.0), sample(host="b", value=2.0)]}
    headers = {"Idempotency-Key": "batch-0001"}
    first = client.post("/api/ingest", json=batch, headers=headers)
    assert first.status_code == 200
    again = client.post("/api/ingest", json=batch, headers=headers)
    assert again.status_code == 200
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert counts(conn) == (2, 2)
    # Same key, different body: a conflict, nothing written.
    other = client.post("/api/ingest", json={"metrics": [sample(host="c")]}, headers=headers)
    assert assert_error(other, 409)["field"] == "Idempotency-Key"
    assert counts(conn) == (2, 2)
    # A failed batch does not consume its key.
    bad = client.post("/api/ingest", json={"metrics": [{"name": "1", "value": 1}]},
                      headers={"Idempotency-Key": "k2"})
    assert_error(bad, 400)
    ok = client.post("/api/ingest", json={"metrics": [sample(host="d")]}, headers={"Idempotency-Key": "k2"})
    assert ok.status_code == 200


def test_rejections_are_counted_in_metrics(client):
    from proxy import metrics

    before = metrics.SAMPLES_REJECTED.labels("invalid_value")._value.get()
    client.post("/api/ingest", json={"metrics": [{"name": "m", "value": "x"}, sample()]})
    assert metrics.SAMPLES_REJECTED.labels("invalid_value")._value.get() == before + 2


# -- property-based: no input gives a 500 or a partial write -----------------------

_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what JSON encoders emit
_json_values = st.recursive(
    st.none() | st.booleans() | _ints | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
_samples = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["m", "cpu_temp", "a:b"]), st.text(max_size=12), _json_values)},
    optional={
        "labels": st.one_of(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3), _json_values),
        "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), _ints, _json_values),
        "timestamp": st.one_of(st.floats(allow_nan=False, allow_infinity=False), _ints, st.text(max_size=30)),
        "type": st.one_of(st.sampled_from(["gauge", "counter"]), st.text(max_size=8)),
    },
)


def test_any_batch_is_all_or_nothing(client, conn):
    @settings(max_examples=60, deadline=None)
    @given(batch=st.lists(st.one_of(_samples, _json_values), max_size=6))
    def check(batch):
        before = counts(conn)
        r = client.post("/api/ingest", data=orjson.dumps({"metrics": batch}),
                        content_type="application/json")
        assert r.status_code in (200, 400, 409), r.data
        body = r.get_json()
        after = counts(conn)
        if r.status_code == 200:
            assert after[1] == before[1] + body["accepted"] == before[1] + len(batch)
        else:
            assert isinstance(body["error"], str)
            assert after == before

    check()


def test_any_bytes_never_500(client, conn):
    @settings(max_examples=40, deadline=None)
    @given(data=st.binary(max_size=200))
    def check(data):
        before = counts(conn)
        r = client.post("/api/ingest", data=data, content_type="application/json")
        assert r.status_code in (200, 400), r.data
        assert isinstance(r.get_json(), dict)
        if r.status_code == 400:
            assert counts(conn) == before

    check()
