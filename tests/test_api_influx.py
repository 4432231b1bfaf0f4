"""POST /api/v2/write and /write: line protocol through the store, Influx's answers.

Against the real PostgreSQL of the test suite (the Flask test client; the real
influxdb-client library against a live proxy is tests/test_influx_client.py).
"""

from __future__ import annotations

import base64
import gzip
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_helpers import new_key

from proxy import close_app, create_app

TEXT = "text/plain; charset=utf-8"


def now_ns() -> int:
    return time.time_ns()


def stored(conn) -> list[tuple[str, dict, float]]:
    return conn.execute(
        "SELECT se.name, se.labels, s.value FROM samples s JOIN series se ON se.id = s.series_id "
        "ORDER BY se.name, se.labels::text, s.time").fetchall()


def write(client, body: bytes | str, path: str = "/api/v2/write", **params):
    data = body.encode() if isinstance(body, str) else body
    return client.post(path, query_string=params or {"org": "o", "bucket": "b"}, data=data,
                       content_type=TEXT)


def v2_error(r, status: int) -> dict:
    """An InfluxDB 2.x error: {"code": ..., "message": ...}."""
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert isinstance(body, dict) and body["code"] and isinstance(body["message"], str), body
    assert "error" not in body
    return body


def test_lines_are_written_and_answered_204(client, conn):
    t = now_ns()
    r = write(client, f"cpu,host=a,cpu=cpu0 usage_user=12.5,procs=3i,up=true {t}\n"
                      f"cpu,host=b,cpu=cpu0 usage_user=1 {t}\n")
    assert r.status_code == 204 and r.data == b""
    assert stored(conn) == [
        ("cpu_procs", {"cpu": "cpu0", "host": "a"}, 3.0),
        ("cpu_up", {"cpu": "cpu0", "host": "a"}, 1.0),
        ("cpu_usage_user", {"cpu": "cpu0", "host": "a"}, 12.5),
        ("cpu_usage_user", {"cpu": "cpu0", "host": "b"}, 1.0),
    ]
    row = conn.execute("SELECT extract(epoch FROM time)::numeric FROM samples LIMIT 1").fetchone()
    assert abs(float(row[0]) - t / 1e9) < 1e-5
    # Series made by line protocol are gauges, like any series created untyped.
    assert {typ for (typ,) in conn.execute("SELECT type FROM series")} == {"gauge"}


def test_v1_write_with_its_precisions(client, conn):
    minutes = now_ns() // (60 * 10**9)
    r = client.post("/write", query_string={"db": "telegraf", "rp": "autogen", "precision": "m"},
                    data=f"mem,host=a used=5i {minutes}", content_type=TEXT)
    assert r.status_code == 204, r.data
    (t,) = conn.execute("SELECT extract(epoch FROM time)::bigint FROM samples").fetchone()
    assert t == minutes * 60


@pytest.mark.parametrize("path", ["/api/v2/write", "/write"])
def test_a_partly_bad_batch_writes_its_good_lines_and_names_the_bad(client, conn, path):
    t = now_ns()
    body = "\n".join([f"m,host=a v=1 {t}", f'm,host=b state="down" {t}', f"m,host=c v=3 {t}",
                      "m,host=d v=", f"m,host=e v=5 {t}"])
    r = write(client, body, path)
    body = r.get_json()
    assert r.status_code == 400, body
    message = body["message"] if path == "/api/v2/write" else body["error"]
    if path == "/api/v2/write":
        assert body["code"] == "invalid"
    assert message.startswith("partial write: 2 of 5 lines refused, 3 written")
    assert "line 2: field 'state'" in message and "line 4: unable to parse" in message
    assert body["line"] == 2 and [e["line"] for e in body["errors"]] == [2, 4]
    assert (body["refused"], body["written"]) == (2, 3)
    assert [(lab["host"], v) for _, lab, v in stored(conn)] == [("a", 1.0), ("c", 3.0), ("e", 5.0)]


def test_a_batch_of_only_bad_lines_writes_nothing(client, conn):
    body = v2_error(write(client, 'm s="x"\nm v=1 1'), 400)
    assert body["message"].startswith("partial write: 2 of 2 lines refused, 0 written")
    assert stored(conn) == []


def test_a_point_written_again_replaces_itself(client, conn):
    t = now_ns()
    assert write(client, f"m v=1 {t}\nm v=2 {t}").status_code == 204  # later line wins
    assert write(client, f"m v=2 {t}").status_code == 204  # a retry changes nothing
    assert stored(conn) == [("m_v", {}, 2.0)]


def test_gzip_bodies(client, conn):
    r = client.post("/api/v2/write", data=gzip.compress(f"m v=7 {now_ns()}".encode()),
                    headers={"Content-Encoding": "gzip"}, content_type=TEXT)
    assert r.status_code == 204, r.data
    assert stored(conn) == [("m_v", {}, 7.0)]


def test_gzip_bomb_is_413_and_corrupt_gzip_400(make_app, conn):
    c = make_app(PROXY_MAX_BODY_BYTES="65536").test_client()
    bomb = gzip.compress(b"m v=1\n" * 2_000_000)  # 12 MB of lines in some 25 kB
    assert len(bomb) < 65536
    r = c.post("/api/v2/write", data=bomb, headers={"Content-Encoding": "gzip"}, content_type=TEXT)
    body = v2_error(r, 413)
    assert body["code"] == "request too large" and "decompressed" in body["message"]
    r = c.post("/api/v2/write", data=bomb[:100], headers={"Content-Encoding": "gzip"},
               content_type=TEXT)
    assert "gzip" in v2_error(r, 400)["message"]
    r = c.post("/api/v2/write", data=b"m v=1", headers={"Content-Encoding": "br"},
               content_type=TEXT)
    assert v2_error(r, 415)["code"] == "unsupported media type"
    assert stored(conn) == []


def test_a_body_over_the_limit_is_413(make_app, conn):
    c = make_app(PROXY_MAX_BODY_BYTES="2048").test_client()
    v2_error(write(c, "m v=1\n" * 1000), 413)
    assert stored(conn) == []


def test_more_samples_than_allowed_is_413_and_nothing_written(make_app, conn):
    c = make_app(PROXY_MAX_SAMPLES_PER_REQUEST="10").test_client()
    body = v2_error(write(c, "\n".join(f"m,i={i} a=1,b=2" for i in range(6))), 413)
    assert body["limit"] == 10 and "PROXY_MAX_SAMPLES_PER_REQUEST" in body["message"]
    assert stored(conn) == []


@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf",
                                          "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_415(client, conn, content_type):
    r = client.post("/api/v2/write", data=b"m v=1", content_type=content_type)
    body = v2_error(r, 415)
    assert "text/plain" in body["message"]
    assert stored(conn) == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream",
                                          "application/x-www-form-urlencoded"])
def test_content_types_line_protocol_arrives_with(client, conn, content_type):
    r = client.post("/api/v2/write", data=b"m v=1", content_type=content_type)
    assert r.status_code == 204, r.data


def test_huge_and_far_timestamps_are_refused_by_line(client, conn):
    r = write(client, "m v=1 99999999999999999999\nm v=1 9223372036854775806\n"
                      "m v=1 -9223372036854775806\nm v=1 253402300800000000000", precision="s")
    body = v2_error(r, 400)
    assert [e["line"] for e in body["errors"]] == [1, 2, 3, 4]
    assert "beyond the year 9999" in body["errors"][1]["message"]
    assert stored(conn) == []


def test_bad_precision_and_empty_body_are_400(client):
    body = v2_error(write(client, "m v=1", precision="m"), 400)  # v1 only
    assert body["parameter"] == "precision" and "ns, us, ms, s" in body["message"]
    body = write(client, "m v=1", "/write", precision="d").get_json()
    assert "invalid precision" in body["error"]
    assert "requires points" in v2_error(write(client, ""), 400)["message"]
    assert "requires points" in v2_error(write(client, "# only a comment\n\n"), 400)["message"]


def test_unknown_query_parameters_are_400_in_influx_shape(client):
    body = v2_error(client.post("/api/v2/write?bucket=b&presicion=s", data=b"m v=1"), 400)
    assert body["parameter"] == "presicion"


def test_auth_as_influx_clients_send_it(make_app, db_url, conn):
    c = make_app(PGPULSE_AUTH="on").test_client()
    key, query_key = new_key(db_url, "ingest"), new_key(db_url, "query")
    line = f"m v=1 {now_ns()}"
    assert c.post("/api/v2/write", data=line, headers={"Authorization": f"Token {key}"},
                  content_type=TEXT).status_code == 204
    basic = base64.b64encode(f"telegraf:{key}".encode()).decode()
    assert c.post("/write", data=line, headers={"Authorization": f"Basic {basic}"},
                  content_type=TEXT).status_code == 204
    assert v2_error(c.post("/api/v2/write", data=line, content_type=TEXT), 401)["code"] == \
        "unauthorized"
    r = c.post("/api/v2/write", data=line, headers={"Authorization": f"Token {query_key}"},
               content_type=TEXT)
    assert v2_error(r, 403)["code"] == "forbidden"
    r = c.post("/write", data=line, headers={"Authorization": "Token pgpk_nope"}, content_type=TEXT)
    assert r.status_code == 401 and r.get_json()["error"]
    # InfluxDB 1.x's u/p query parameters: refused, whether the key is right or not,
    # so no key ever travels in a URL.
    for params in ({"u": "x", "p": key}, {"u": "x", "p": "secret"}):
        r = c.post("/write", query_string={"db": "d", **params}, data=line, content_type=TEXT)
        assert r.status_code == 400 and key not in r.get_data(as_text=True)
    assert stored(conn) == [("m_v", {}, 1.0)]


def test_cardinality_limit_is_429_with_retry_after_and_nothing_written(make_app, conn):
    c = make_app(PROXY_MAX_SERIES="3", PROXY_MAX_SERIES_PER_METRIC="3").test_client()
    assert write(c, "m,i=1 v=1\nm,i=2 v=1").status_code == 204
    r = write(c, "m,i=1 v=2\nm,i=3 v=1\nm,i=4 v=1\nm,i=5 v=1")
    body = v2_error(r, 429)
    assert body["code"] == "too many requests" and int(r.headers["Retry-After"]) > 0
    assert body["limit"] == 3
    assert sorted(v for _, _, v in stored(conn)) == [1.0, 1.0]  # the batch wrote nothing
    r = write(c, "m,i=3 v=1\nm,i=4 v=1", "/write")
    assert r.status_code == 429 and r.get_json()["error"] and r.headers["Retry-After"]


def test_database_down_is_503_with_retry_after():
    app = create_app({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
                      "PGPULSE_AUTH": "off", "PROXY_DB_TIMEOUT_SECONDS": "0.5"})
    try:
        c = app.test_client()
        r = write(c, "m v=1")
        assert v2_error(r, 503)["code"] == "unavailable" and r.headers["Retry-After"]
        r = write(c, "m v=1", "/write")
        assert r.status_code == 503 and r.get_json()["error"] and r.headers["Retry-After"]
    finally:
        close_app(app)


def test_wrong_method_is_405_json(client):
    r = client.get("/api/v2/write")
    assert r.status_code == 405 and "POST" in r.headers["Allow"] and r.get_json()["error"]


_lines = st.lists(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["m v=1", "m,t=a v=1i", 'm s="x"', "m v=", "m,t=\\ v=1", "m v=1 1",
                     "m v=1 99999999999999999999", "m\\", "m,=a v=1", "# c", "m v=1u",
                     "m,t=a v=true 1700000000000000000"]),
), max_size=6).map("\n".join)


def test_every_answer_is_influx_shaped_never_500(make_app, db_url):
    apps = {True: make_app(PGPULSE_AUTH="on"), False: make_app()}
    key = new_key(db_url, "ingest")

    @settings(max_examples=150, deadline=None)
    @given(path=st.sampled_from(["/api/v2/write", "/write"]), body=_lines | st.binary(max_size=64),
           precision=st.sampled_from(["ns", "us", "ms", "s", "m", "h", "x", None]),
           gz=st.booleans(), auth=st.booleans(), method=st.sampled_from(["POST", "POST", "GET"]),
           content_type=st.sampled_from([TEXT, "application/json", None]))
    def check(path, body, precision, gz, auth, method, content_type):
        data = body.encode() if isinstance(body, str) else body
        headers = {"Authorization": f"Token {key}"}
        if gz:
            data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
        r = apps[auth].test_client().open(
            path, method=method, data=data, headers=headers, content_type=content_type,
            query_string={"precision": precision} if precision else {})
        assert r.status_code in (204, 400, 405, 413, 415, 429), (r.status_code, r.data)
        if r.status_code == 204:
            return
        payload = r.get_json(silent=True)
        assert isinstance(payload, dict), r.data
        if path == "/api/v2/write" and r.status_code != 405:
            assert isinstance(payload["code"], str) and isinstance(payload["message"], str)
        else:
            assert isinstance(payload["error"], str)

    check()
