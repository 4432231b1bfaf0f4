"""POST /api/v1/write: Prometheus remote write 1.0 decoding, statuses and bad input.

Requests are built with the protobuf classes pgpulse ships (pgpulse/protocols/prompb)
and compressed with cramjam's snappy, as Prometheus does; tests/test_prometheus_remote_write.py
has a real Prometheus send them. Runs against the real PostgreSQL of the test suite.
"""

from __future__ import annotations

import base64
import gzip
import math
import struct
import time

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_helpers import assert_error, new_key

from pgpulse.protocols import remote_write
from pgpulse.protocols.prompb import MetricMetadata, WriteRequest

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def now_ms() -> int:
    return int(time.time() * 1000)


def request(*series: tuple[dict[str, str], list[tuple[float, int]]], metadata=()) -> WriteRequest:
    req = WriteRequest()
    for labels, points in series:
        ts = req.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for value, t in points:
            ts.samples.add(value=value, timestamp=t)
    for family, typ, help_, unit in metadata:
        req.metadata.add(metric_family_name=family, type=typ, help=help_, unit=unit)
    return req


def body(req: WriteRequest) -> bytes:
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def post(client, data: bytes, headers: dict[str, str] | None = None):
    return client.post("/api/v1/write", data=data, headers=headers or HEADERS)


def stored(conn) -> dict[tuple[str, tuple], list[tuple[int, float]]]:
    rows = conn.execute(
        "SELECT se.name, se.labels, (extract(epoch FROM s.time) * 1000)::bigint, s.value "
        "FROM samples s JOIN series se ON se.id = s.series_id ORDER BY 1, 2::text, 3").fetchall()
    out: dict = {}
    for name, labels, t, v in rows:
        out.setdefault((name, tuple(sorted(labels.items()))), []).append((t, v))
    return out


def test_samples_are_stored_under_name_and_labels(client, conn):
    t = now_ms() - 10_000
    req = request(({"__name__": "up", "job": "node", "instance": "a:9100"}, [(1.0, t), (0.0, t + 1000)]),
                  ({"__name__": "node_load1", "instance": "a:9100", "empty": ""}, [(0.25, t)]))
    r = post(client, body(req))
    assert r.status_code == 204, r.get_data(as_text=True)
    assert r.get_data() == b""
    assert stored(conn) == {
        ("node_load1", (("instance", "a:9100"),)): [(t, 0.25)],
        ("up", (("instance", "a:9100"), ("job", "node"))): [(t, 1.0), (t + 1000, 0.0)],
    }
    # The same request again (a retry): nothing duplicated.
    assert post(client, body(req)).status_code == 204
    assert sum(len(v) for v in stored(conn).values()) == 3


def test_staleness_marker_is_a_marker_and_other_nans_are_values(client, conn):
    t = now_ms() - 10_000
    req = request(({"__name__": "gone"}, [(5.0, t), (STALE, t + 1000)]),
                  ({"__name__": "quantile_nan", "quantile": "0.5"}, [(math.nan, t)]))
    assert post(client, body(req)).status_code == 204
    data = stored(conn)
    assert data[("gone", ())] == [(t, 5.0)]
    assert math.isnan(data[("quantile_nan", (("quantile", "0.5"),))][0][1])
    markers = conn.execute(
        "SELECT se.name, (extract(epoch FROM m.time) * 1000)::bigint FROM stale_markers m "
        "JOIN series se ON se.id = m.series_id").fetchall()
    assert markers == [("gone", t + 1000)]


def test_stale_nan_is_told_apart_by_its_bits():
    assert remote_write.is_stale(STALE)
    assert not remote_write.is_stale(math.nan)
    assert not remote_write.is_stale(-math.nan)
    assert not remote_write.is_stale(0.0)


def test_metadata_is_kept_and_types_the_family_series(client, conn):
    t = now_ms() - 10_000
    meta = [("http_req", MetricMetadata.HISTOGRAM, "Request latency.", "seconds"),
            ("rpc", MetricMetadata.SUMMARY, "RPC latency.", "seconds"),
            ("temp", MetricMetadata.GAUGE, "Temperature.", "celsius"),
            ("errors", MetricMetadata.COUNTER, "Errors.", "")]
    req = request(
        ({"__name__": "http_req_bucket", "le": "0.5"}, [(3, t)]),
        ({"__name__": "http_req_bucket", "le": "+Inf"}, [(4, t)]),
        ({"__name__": "http_req_sum"}, [(1.5, t)]),
        ({"__name__": "http_req_count"}, [(4, t)]),
        ({"__name__": "rpc", "quantile": "0.9"}, [(0.2, t)]),
        ({"__name__": "rpc_sum"}, [(7, t)]),
        ({"__name__": "rpc_count"}, [(70, t)]),
        ({"__name__": "temp"}, [(21.5, t)]),
        ({"__name__": "errors_total"}, [(2, t)]),
        ({"__name__": "no_metadata_total"}, [(2, t)]),
        ({"__name__": "no_metadata"}, [(2, t)]),
        metadata=meta)
    assert post(client, body(req)).status_code == 204
    types = dict(conn.execute("SELECT name || labels::text, type FROM series").fetchall())
    assert types == {
        'http_req_bucket{"le": "0.5"}': "counter", 'http_req_bucket{"le": "+Inf"}': "counter",
        "http_req_sum{}": "counter", "http_req_count{}": "counter",
        'rpc{"quantile": "0.9"}': "gauge", "rpc_sum{}": "counter", "rpc_count{}": "counter",
        "temp{}": "gauge", "errors_total{}": "counter", "no_metadata_total{}": "counter",
        "no_metadata{}": "gauge"}
    assert conn.execute("SELECT name, type, help, unit FROM metric_metadata ORDER BY name"
                        ).fetchall() == [("errors", "counter", "Errors.", ""),
                                         ("http_req", "histogram", "Request latency.", "seconds"),
                                         ("rpc", "summary", "RPC latency.", "seconds"),
                                         ("temp", "gauge", "Temperature.", "celsius")]


def test_metadata_sent_alone_types_series_created_later(client, conn):
    # Prometheus sends metadata in requests of their own, samples in others.
    meta = request(metadata=[("queue_depth", MetricMetadata.COUNTER, "Depth.", "")])
    assert post(client, body(meta)).status_code == 204
    assert post(client, body(request(({"__name__": "queue_depth"}, [(1, now_ms())])))).status_code == 204
    assert conn.execute("SELECT type FROM series WHERE name = 'queue_depth'").fetchone() == ("counter",)


def test_a_gauge_series_later_said_to_be_a_counter_is_no_conflict(client, conn):
    t = now_ms() - 5000
    assert post(client, body(request(({"__name__": "x_total_ish"}, [(1, t)])))).status_code == 204
    meta = [("x_total_ish", MetricMetadata.COUNTER, "", "")]
    r = post(client, body(request(({"__name__": "x_total_ish"}, [(2, t + 1000)]), metadata=meta)))
    assert r.status_code == 204, r.get_data(as_text=True)
    assert len(stored(conn)[("x_total_ish", ())]) == 2


def test_native_histogram_is_refused_and_the_rest_stored(client, conn):
    t = now_ms()
    req = request(({"__name__": "good"}, [(1, t)]))
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="latency")
    ts.histograms.add(count_int=3, sum=1.5, schema=3, timestamp=t)
    body_ = assert_error(post(client, body(req)), 400)
    assert "native histograms are not supported" in body_["error"]
    assert "latency{}" in body_["error"]
    assert body_["refused_series"] == 1 and body_["stored_samples"] == 1
    assert list(stored(conn)) == [("good", ())]


@pytest.mark.parametrize("labels, says", [
    ({"job": "x"}, "no __name__"),
    ({"__name__": "bad-name"}, "metric name"),
    ({"__name__": "ok", "__reserved": "1"}, "reserved"),
    ({"__name__": "ok", "v": "x" * 5000}, "longer than"),
])
def test_one_bad_series_among_good_ones(client, conn, labels, says):
    """The good series are stored, the 400 names the bad one (Prometheus drops the
    request instead of retrying it, so refusing all would lose the good ones)."""
    t = now_ms()
    req = request(({"__name__": "a"}, [(1, t)]), (labels, [(9, t)]), ({"__name__": "b"}, [(2, t)]))
    err = assert_error(post(client, body(req)), 400)
    assert says in err["error"], err
    assert err["refused_series"] == 1 and err["refused_samples"] == 1 and err["stored_samples"] == 2
    assert sorted(stored(conn)) == [("a", ()), ("b", ())]


def test_samples_outside_the_window_are_refused(client, conn):
    t = now_ms()
    req = request(({"__name__": "a"}, [(1, t), (2, t - 30 * 86400 * 1000)]))
    err = assert_error(post(client, body(req)), 400)
    assert "outside the accepted window" in err["error"]
    assert stored(conn) == {("a", ()): [(t, 1.0)]}


@pytest.mark.parametrize("headers, status, says", [
    ({**HEADERS, "Content-Type": "application/json"}, 415, "Content-Type"),
    ({k: v for k, v in HEADERS.items() if k != "Content-Type"}, 415, "Content-Type"),
    ({**HEADERS, "Content-Encoding": "gzip"}, 415, "Content-Encoding"),
    ({k: v for k, v in HEADERS.items() if k != "Content-Encoding"}, 415, "Content-Encoding"),
    ({**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
     415, "io.prometheus.write.v2.Request"),
    ({k: v for k, v in HEADERS.items() if k != "X-Prometheus-Remote-Write-Version"}, 400,
     "X-Prometheus-Remote-Write-Version"),
    ({**HEADERS, "X-Prometheus-Remote-Write-Version": "2.0.0"}, 415, "version"),
])
def test_wrong_headers(client, conn, headers, status, says):
    r = post(client, body(request(({"__name__": "a"}, [(1, now_ms())]))), headers)
    assert says in assert_error(r, status)["error"]
    assert stored(conn) == {}


def test_content_type_with_the_v1_message_parameter_is_taken(client, conn):
    headers = {**HEADERS, "Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest"}
    assert post(client, body(request(({"__name__": "a"}, [(1, now_ms())]))), headers).status_code == 204


def test_corrupt_snappy(client, conn):
    data = body(request(({"__name__": "a", "x": "y" * 100}, [(1, now_ms())])))
    # cut short: the stream ends before the length its header says
    assert "snappy" in assert_error(post(client, data[:-10]), 400)["error"]
    # a copy that reaches back before the start of the output
    assert "snappy" in assert_error(post(client, b"\x10\x0a\xff\xff"), 400)["error"]
    assert "snappy" in assert_error(post(client, b""), 400)["error"]
    # framed snappy (the streaming format) is not the block format remote write uses
    framed = bytes(cramjam.snappy.compress(request(({"__name__": "a"}, [(1, 1)])).SerializeToString()))
    assert post(client, framed).status_code == 400
    assert stored(conn) == {}


def test_truncated_protobuf(client, conn):
    raw = request(({"__name__": "a", "job": "j"}, [(1, now_ms())])).SerializeToString()
    r = post(client, bytes(cramjam.snappy.compress_raw(raw[:-5])))
    assert "protobuf" in assert_error(r, 400)["error"]
    assert stored(conn) == {}


def test_snappy_bomb_is_refused_before_decompressing(make_app, conn):
    client = make_app(PROXY_MAX_BODY_BYTES=64 * 1024).test_client()
    bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * (1024 * 1024)))
    assert len(bomb) < 64 * 1024
    err = assert_error(post(client, bomb), 413)
    assert "decompresses to 1048576 bytes" in err["error"]
    # A header that lies about the length is refused the same way.
    liar = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10
    assert assert_error(post(client, liar), 413)["limit_bytes"] == 64 * 1024


def test_gzip_body_is_not_snappy(client, conn):
    data = gzip.compress(request(({"__name__": "a"}, [(1, now_ms())])).SerializeToString())
    assert post(client, data).status_code == 400
    r = post(client, data, {**HEADERS, "Content-Encoding": "gzip"})
    assert assert_error(r, 415)["supported"] == ["snappy"]


def test_too_many_samples(make_app, conn):
    client = make_app(PROXY_MAX_SAMPLES_PER_REQUEST=10).test_client()
    req = request(({"__name__": "a"}, [(i, now_ms() - i) for i in range(11)]))
    assert "max_samples_per_send" in assert_error(post(client, body(req)), 413)["error"]


def test_series_limit_is_429_with_retry_after(make_app, conn):
    client = make_app(PROXY_MAX_SERIES=2, PROXY_MAX_SERIES_PER_METRIC=2).test_client()
    req = request(*[({"__name__": "m", "i": str(i)}, [(1, now_ms())]) for i in range(3)])
    r = post(client, body(req))
    assert_error(r, 429)
    assert int(r.headers["Retry-After"]) > 0
    assert stored(conn) == {}


def test_auth_bearer_and_basic_with_the_key_as_password(make_app, db_url, conn):
    client = make_app(PGPULSE_AUTH="on").test_client()
    key = new_key(db_url, "ingest")
    data = body(request(({"__name__": "a"}, [(1, now_ms())])))
    assert_error(post(client, data), 401)
    assert post(client, data, {**HEADERS, "Authorization": f"Bearer {key}"}).status_code == 204
    basic = base64.b64encode(f"prometheus:{key}".encode()).decode()
    assert post(client, data, {**HEADERS, "Authorization": f"Basic {basic}"}).status_code == 204
    query_key = new_key(db_url, "query")
    assert_error(post(client, data, {**HEADERS, "Authorization": f"Bearer {query_key}"}), 403)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), snappy=st.booleans())
def test_no_body_is_a_500(client, raw, snappy):
    """Random bytes, raw or snappy-compressed: a 4xx or, when they happen to be a
    valid (empty) WriteRequest, a 204; never a 500. The app is shared by the examples."""
    data = bytes(cramjam.snappy.compress_raw(raw)) if snappy else raw
    r = post(client, data)
    assert r.status_code in (204, 400, 413), r.get_data(as_text=True)


def test_database_down_is_503_so_prometheus_retries():
    from proxy import close_app, create_app

    app = create_app({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
                      "PGPULSE_AUTH": "off", "PROXY_DB_TIMEOUT_SECONDS": "0.5"})
    try:
        r = post(app.test_client(), body(request(({"__name__": "a"}, [(1, now_ms())]))))
        assert_error(r, 503)
        assert r.headers["Retry-After"]
    finally:
        close_app(app)
