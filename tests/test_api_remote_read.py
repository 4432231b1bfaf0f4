"""POST /api/v1/read: Prometheus remote read, through the Flask test client and with a
real Prometheus (Debian's 2.42) reading pgpulse as its remote storage.

Data is written the way Prometheus writes it, through pgpulse's remote-write endpoint
(staleness markers included); requests are built with pgpulse's protobuf classes and
cramjam's snappy, as Prometheus builds them. Runs against the real PostgreSQL of the
test suite.
"""

from __future__ import annotations

import math
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import pytest
import requests
from polling import wait_for
from proxy_helpers import assert_error, live_proxy, new_key
from test_api_remote_write import HEADERS as WRITE_HEADERS
from test_api_remote_write import body as write_body
from test_api_remote_write import request as write_request
from test_prometheus_remote_write import answers, free_port, tool

from pgpulse.protocols.prompb import LabelMatcher, ReadRequest, ReadResponse
from proxy.api.remote_read import SERIES_PER_READ

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Read-Version": "0.1.0"}
STALE_BITS = 0x7FF0000000000002
STALE = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]
OPS = {"=": LabelMatcher.EQ, "!=": LabelMatcher.NEQ, "=~": LabelMatcher.RE, "!~": LabelMatcher.NRE}
DEADLINE = 120  # seconds: generous, for a busy 2-core machine

# A minute-aligned base an hour ago: inside remote write's accepted window.
BASE = (int(time.time()) // 60 - 60) * 60_000


def read_request(*queries: tuple[int, int, list[tuple[str, str, str]]],
                 accepted: tuple[int, ...] = ()) -> ReadRequest:
    req = ReadRequest()
    for start, end, matchers in queries:
        q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
        for name, op, value in matchers:
            q.matchers.add(name=name, type=OPS[op], value=value)
    req.accepted_response_types.extend(accepted)
    return req


def compress(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


def post(client, data: bytes, headers: dict[str, str] | None = None):
    return client.post("/api/v1/read", data=data, headers=HEADERS if headers is None else headers)


def bits(v: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def value_key(v: float) -> float | str:
    if bits(v) == STALE_BITS:
        return "stale"
    return "NaN" if math.isnan(v) else v


def answer(r) -> list[dict[tuple, list[tuple[int, float | str]]]]:
    """Each query's series (labels, __name__ among them) -> [(ms, value)] of a 200."""
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == "application/x-protobuf"
    assert r.headers["Content-Encoding"] == "snappy"
    resp = ReadResponse()
    resp.ParseFromString(bytes(cramjam.snappy.decompress_raw(r.get_data())))
    out = []
    for result in resp.results:
        series = {}
        for ts in result.timeseries:
            names = [label.name for label in ts.labels]
            assert names == sorted(names), "labels are sorted by name"
            key = tuple((label.name, label.value) for label in ts.labels)
            series[key] = [(s.timestamp, value_key(s.value)) for s in ts.samples]
        out.append(series)
    return out


def read(client, *queries, accepted=()) -> list[dict]:
    return answer(post(client, compress(read_request(*queries, accepted=accepted).SerializeToString())))


def write(client, *series) -> None:
    r = client.post("/api/v1/write", data=write_body(write_request(*series)), headers=WRITE_HEADERS)
    assert r.status_code == 204, r.get_data(as_text=True)


def key(name: str, **labels: str) -> tuple:
    return tuple(sorted({"__name__": name, **labels}.items()))


def populate(client) -> None:
    """temp{host=a|b|c}, load{host=a} every 10 s for a minute; temp{host=a} goes stale
    at BASE + 65 s, and comes back at BASE + 120 s."""
    t = BASE
    points = [(float(i) + 0.5, t + i * 10_000) for i in range(6)]
    write(client,
          ({"__name__": "temp", "host": "a", "dc": "eu"}, [*points, (STALE, t + 65_000), (9.0, t + 120_000)]),
          ({"__name__": "temp", "host": "b", "dc": "eu"}, [(10.0 + v, ts) for v, ts in points]),
          ({"__name__": "temp", "host": "c"}, [(20.0 + v, ts) for v, ts in points]),
          ({"__name__": "load", "host": "a"}, [(0.25, t), (0.5, t + 30_000)]))


A = [(BASE + i * 10_000, i + 0.5) for i in range(6)]


# -- matchers ------------------------------------------------------------------------------


def test_every_matcher_type_selects_like_prometheus(client):
    populate(client)
    end = BASE + 50_000
    (eq,) = read(client, (BASE, end, [("__name__", "=", "temp"), ("host", "=", "a")]))
    assert eq == {key("temp", host="a", dc="eu"): A}
    (neq,) = read(client, (BASE, end, [("__name__", "=", "temp"), ("host", "!=", "a")]))
    assert set(neq) == {key("temp", host="b", dc="eu"), key("temp", host="c")}
    (re,) = read(client, (BASE, end, [("__name__", "=~", "te.*"), ("host", "=~", "a|c")]))
    assert set(re) == {key("temp", host="a", dc="eu"), key("temp", host="c")}
    (nre,) = read(client, (BASE, end, [("__name__", "!~", "temp"), ("host", "!~", "b")]))
    assert nre == {key("load", host="a"): [(BASE, 0.25), (BASE + 30_000, 0.5)]}
    # An empty value matches a series without the label, as in Prometheus.
    (absent,) = read(client, (BASE, end, [("__name__", "=", "temp"), ("dc", "=", "")]))
    assert set(absent) == {key("temp", host="c")}
    (name_neq,) = read(client, (BASE, end, [("__name__", "!=", "temp"), ("host", "=", "a")]))
    assert set(name_neq) == {key("load", host="a")}
    (nothing,) = read(client, (BASE, end, [("__name__", "=", "missing")]))
    assert nothing == {}


def test_several_queries_get_one_result_each_in_order(client):
    populate(client)
    results = read(client, (BASE, BASE + 50_000, [("__name__", "=", "load")]),
                   (BASE, BASE + 50_000, [("__name__", "=", "missing")]),
                   (BASE, BASE + 50_000, [("__name__", "=", "temp"), ("host", "=", "c")]))
    assert [set(r) for r in results] == [{key("load", host="a")}, set(), {key("temp", host="c")}]


# -- time ranges and staleness ---------------------------------------------------------------


def test_both_ends_of_the_range_are_included_and_nothing_outside(client):
    populate(client)
    sel = [("__name__", "=", "temp"), ("host", "=", "a")]
    (r,) = read(client, (BASE + 10_000, BASE + 30_000, sel))
    assert r == {key("temp", host="a", dc="eu"): A[1:4]}
    (r,) = read(client, (BASE + 10_001, BASE + 29_999, sel))
    assert r == {key("temp", host="a", dc="eu"): A[2:3]}
    (r,) = read(client, (BASE + 20_000, BASE + 20_000, sel))
    assert r == {key("temp", host="a", dc="eu"): A[2:3]}
    # A series with nothing in the range is not in the answer.
    (r,) = read(client, (BASE + 51_000, BASE + 59_000, sel))
    assert r == {}


def test_staleness_markers_come_as_stale_nan_in_time_order(client):
    populate(client)
    (r,) = read(client, (BASE, BASE + 180_000, [("__name__", "=", "temp"), ("host", "=", "a")]))
    assert r == {key("temp", host="a", dc="eu"): [*A, (BASE + 65_000, "stale"), (BASE + 120_000, 9.0)]}
    # A range holding only the marker answers the marker.
    (r,) = read(client, (BASE + 60_000, BASE + 100_000, [("host", "=", "a"), ("__name__", "=", "temp")]))
    assert r == {key("temp", host="a", dc="eu"): [(BASE + 65_000, "stale")]}


def test_nan_and_infinities_are_values_not_markers(client):
    t = BASE
    write(client, ({"__name__": "odd"}, [(math.nan, t), (math.inf, t + 1000), (-math.inf, t + 2000),
                                        (1.23456789012345e-300, t + 3000)]))
    (r,) = read(client, (t, t + 3000, [("__name__", "=", "odd")]))
    assert r == {key("odd"): [(t, "NaN"), (t + 1000, math.inf), (t + 2000, -math.inf),
                              (t + 3000, 1.23456789012345e-300)]}


def test_samples_response_type_is_negotiated(client):
    populate(client)
    q = (BASE, BASE + 50_000, [("__name__", "=", "load")])
    for accepted in ((), (ReadRequest.SAMPLES,), (ReadRequest.STREAMED_XOR_CHUNKS, ReadRequest.SAMPLES)):
        (r,) = read(client, q, accepted=accepted)
        assert set(r) == {key("load", host="a")}
    only_chunks = read_request(q, accepted=(ReadRequest.STREAMED_XOR_CHUNKS,))
    body = assert_error(post(client, compress(only_chunks.SerializeToString())), 400)
    assert "STREAMED_XOR_CHUNKS" in body["error"] and "SAMPLES" in body["error"]


# -- bad input -------------------------------------------------------------------------------


def test_corrupt_snappy_is_a_400(client):
    good = compress(read_request((BASE, BASE + 1, [("__name__", "=", "x")])).SerializeToString())
    # A bad copy offset, a block cut short, a header that is no length, plain protobuf.
    plain = read_request((BASE, BASE + 1, [("__name__", "=", "x")])).SerializeToString()
    for data in (b"\x00\x01\x02garbage", good[:-3], b"\xff\xff\xff\xff\xff\xff", plain):
        body = assert_error(post(client, data), 400)
        assert "snappy" in body["error"]
    body = assert_error(post(client, b""), 400)
    assert "empty body" in body["error"]


def test_truncated_protobuf_is_a_400(client):
    raw = read_request((BASE, BASE + 1, [("__name__", "=", "temperature_celsius")])).SerializeToString()
    body = assert_error(post(client, compress(raw[:-5])), 400)
    assert "protobuf ReadRequest" in body["error"]


def test_bad_queries_are_400s_naming_what_is_wrong(client):
    cases = [
        (read_request(), "no queries"),
        (read_request((BASE + 10, BASE, [("__name__", "=", "x")])), "before start_timestamp_ms"),
        (read_request((BASE, BASE + 10, [])), "no label matchers"),
        (read_request((BASE, BASE + 10, [("", "=", "x")])), "no label name"),
    ]
    for req, expected in cases:
        body = assert_error(post(client, compress(req.SerializeToString())), 400)
        assert expected in body["error"], body


@pytest.mark.parametrize("headers, expected", [
    ({"Content-Type": "application/json", "Content-Encoding": "snappy"}, "Content-Type"),
    ({"Content-Type": "application/x-protobuf"}, "Content-Encoding"),
    ({"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, "Content-Encoding"),
    ({"Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest",
      "Content-Encoding": "snappy"}, "protobuf message"),
])
def test_wrong_headers_are_a_415(client, headers, expected):
    data = compress(read_request((BASE, BASE + 1, [("__name__", "=", "x")])).SerializeToString())
    body = assert_error(post(client, data, headers), 415)
    assert expected in body["error"]


def test_a_body_that_decompresses_past_the_limit_is_a_413(make_app):
    client = make_app(PROXY_MAX_BODY_BYTES="2048").test_client()
    q = read_request((BASE, BASE + 1, [("__name__", "=", "x" * 5000)]))
    data = compress(q.SerializeToString())
    assert len(data) < 2048  # small on the wire, too large once decompressed
    body = assert_error(post(client, data), 413)
    assert "PROXY_MAX_BODY_BYTES" in body["error"]


def test_the_series_and_sample_limits_are_422s_naming_them(make_app):
    populate(make_app().test_client())
    q = (BASE, BASE + 180_000, [("__name__", "=", "temp")])  # 3 series, 20 samples (1 marker)
    client = make_app(PROXY_MAX_QUERY_SERIES="2").test_client()
    body = assert_error(post(client, compress(read_request(q).SerializeToString())), 422)
    assert "PROXY_MAX_QUERY_SERIES" in body["error"] and body["limit"] == 2
    client = make_app(PROXY_MAX_READ_SAMPLES="19").test_client()
    body = assert_error(post(client, compress(read_request(q).SerializeToString())), 422)
    assert "PROXY_MAX_READ_SAMPLES" in body["error"] and body["limit"] == 19
    # Counted over all the queries of a request.
    client = make_app(PROXY_MAX_READ_SAMPLES="20").test_client()
    (r,) = read(client, q)
    assert sum(map(len, r.values())) == 20
    body = assert_error(post(client, compress(read_request(q, q).SerializeToString())), 422)
    assert "PROXY_MAX_READ_SAMPLES" in body["error"]


def test_the_key_needs_the_query_scope(make_app, db_url):
    client = make_app(PGPULSE_AUTH="on").test_client()
    data = compress(read_request((BASE, BASE + 1, [("__name__", "=", "x")])).SerializeToString())
    assert_error(post(client, data), 401)
    ingest_only = new_key(db_url, "ingest")
    assert_error(post(client, data, {**HEADERS, "Authorization": f"Bearer {ingest_only}"}), 403)
    reader = new_key(db_url, "query")
    assert answer(post(client, data, {**HEADERS, "Authorization": f"Bearer {reader}"})) == [{}]


# -- a real Prometheus reading pgpulse ---------------------------------------------------------


@pytest.fixture
def live(db_url: str) -> Iterator[str]:
    with live_proxy(db_url) as url:
        yield url


def prometheus_config(url: str, key: str) -> str:
    return f"""
global:
  scrape_interval: 1h
remote_read:
  - url: {url}/api/v1/read
    read_recent: true
    authorization:
      credentials: {key}
"""


def prom_query(base: str, path: str, **params: str) -> list[dict]:
    r = requests.get(base + path, params=params, timeout=DEADLINE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def by_series(result: list[dict]) -> dict[tuple, list[tuple[int, float]]]:
    return {tuple(sorted(s["metric"].items())): [(round(float(t) * 1000), float(v))
                                                for t, v in s["values"]] for s in result}


def instant_values(points: list[tuple[int, float | str]], steps: list[int], lookback_ms: int
                   ) -> list[tuple[int, float]]:
    """What an instant selector answers at each step: the newest sample at most
    ``lookback_ms`` old, unless it is a staleness marker (Prometheus 2.42's rule)."""
    out = []
    for t in steps:
        seen = [(ts, v) for ts, v in points if t - lookback_ms <= ts <= t]
        if seen and seen[-1][1] != "stale":
            out.append((t, seen[-1][1]))
    return out


def test_prometheus_reads_pgpulse_through_remote_read(db_url, live, tmp_path: Path):
    write_key, read_key = new_key(db_url, "ingest"), new_key(db_url, "query")
    t0 = BASE
    # Irregular times (with milliseconds), many decimals, a staleness marker, a gap
    # longer than the lookback and a comeback: all as Prometheus itself writes them.
    a = [(t0 + 7, 1.000000001), (t0 + 15_123, 2.5), (t0 + 40_000, -3.25e-7), (t0 + 61_500, 1e300)]
    a_all = [*a, (t0 + 75_000, STALE), (t0 + 700_000, 42.0)]
    b = [(t0 + i * 30_000, float(i) * 0.1) for i in range(20)]
    body = write_body(write_request(({"__name__": "rr_metric", "host": "a"}, [(v, t) for t, v in a_all]),
                                    ({"__name__": "rr_metric", "host": "b"}, [(v, t) for t, v in b]),
                                    ({"__name__": "rr_other", "host": "a"}, [(5.0, t0)])))
    r = requests.post(live + "/api/v1/write", data=body, timeout=DEADLINE,
                      headers={**WRITE_HEADERS, "Authorization": f"Bearer {write_key}"})
    assert r.status_code == 204, r.text

    port = free_port()
    prom_url = f"http://127.0.0.1:{port}"
    (tmp_path / "prometheus.yml").write_text(prometheus_config(live, read_key))
    log = tmp_path / "prometheus.log"
    prom = subprocess.Popen([tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert prom.poll() is None, log.read_text()
            return answers(prom_url + "/-/ready")

        wait_for(ready, DEADLINE, "Prometheus to be ready")

        # A range selector at a fixed time: exactly pgpulse's samples in [t - 10m, t],
        # the staleness marker not among them (PromQL drops markers from ranges).
        at = t0 + 600_000
        got = by_series(prom_query(prom_url, "/api/v1/query", query="rr_metric[10m]",
                                   time=f"{at / 1000:.3f}"))
        assert got == {
            (("__name__", "rr_metric"), ("host", "a")): a,
            (("__name__", "rr_metric"), ("host", "b")): b,
        }, log.read_text()[-3000:]
        # Matchers of every type go through to pgpulse.
        got = by_series(prom_query(prom_url, "/api/v1/query", time=f"{at / 1000:.3f}",
                                   query='{__name__=~"rr_.*", host!="b", __name__!~"rr_metric"}[10m]'))
        assert got == {(("__name__", "rr_other"), ("host", "a")): [(t0, 5.0)]}

        # A range query: the lookback, and the staleness marker ending host a at once.
        start, end, step = t0, t0 + 900_000, 15_000
        steps = list(range(start, end + 1, step))
        got = by_series(prom_query(prom_url, "/api/v1/query_range", query="rr_metric",
                                   start=f"{start / 1000:.3f}", end=f"{end / 1000:.3f}", step="15s"))
        expected_a = instant_values([(t, value_key(v)) for t, v in a_all], steps, 300_000)
        expected_b = instant_values(b, steps, 300_000)
        assert got == {(("__name__", "rr_metric"), ("host", "a")): expected_a,
                       (("__name__", "rr_metric"), ("host", "b")): expected_b}
        # The marker mattered: without it host a would have a value at t0 + 75 s.
        times_a = [t for t, _ in expected_a]
        assert t0 + 60_000 in times_a and t0 + 75_000 not in times_a
        assert t0 + 705_000 in times_a
    finally:
        prom.terminate()
        prom.wait(timeout=DEADLINE)


def test_the_documented_remote_read_block_is_a_valid_prometheus_config(tmp_path: Path):
    """docs/sending-data.md's copy-paste block, checked by Prometheus's own promtool."""
    text = (Path(__file__).parent.parent / "docs" / "sending-data.md").read_text()
    section = text.split("### Reading from Prometheus (remote_read)", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("remote_read:") and "/api/v1/read" in block and "read_recent: true" in block
    (tmp_path / "prometheus.yml").write_text(block)
    done = subprocess.run([tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_many_series_are_read_in_parts_and_all_answered(make_app):
    n = SERIES_PER_READ * 2 + 7
    client = make_app().test_client()
    write(client, *[({"__name__": "many", "i": f"{i:04d}"}, [(float(i), BASE), (-float(i), BASE + 1)])
                    for i in range(n)])
    q = (BASE, BASE + 1, [("__name__", "=", "many")])
    (r,) = read(client, q)
    assert r == {key("many", i=f"{i:04d}"): [(BASE, float(i)), (BASE + 1, -float(i))]
                 for i in range(n)}
    # Refused past the limit in a later part, not only at the end.
    client = make_app(PROXY_MAX_READ_SAMPLES=str(SERIES_PER_READ * 2 + 1)).test_client()
    body = assert_error(post(client, compress(read_request(q).SerializeToString())), 422)
    assert "PROXY_MAX_READ_SAMPLES" in body["error"]
