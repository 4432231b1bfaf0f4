"""The real influxdb-client library (PyPI) writing line protocol to a live proxy.

The proxy serves on a real socket with auth on (werkzeug, as in `pgpulse up`); the
client sends its own requests: ``Authorization: Token <key>``, ``org``/``bucket``/
``precision`` parameters, gzip when asked. What lands is read back from PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from proxy_helpers import live_proxy, new_key

PRECISIONS = {WritePrecision.NS: 1, WritePrecision.US: 1_000, WritePrecision.MS: 1_000_000,
              WritePrecision.S: 1_000_000_000}


@pytest.fixture
def proxy_url(db_url: str) -> Iterator[str]:
    with live_proxy(db_url) as url:
        yield url


def rows(db_url: str, name: str) -> list[tuple[dict, Decimal, float]]:
    """(labels, Unix µs, value) of a metric's samples, oldest first."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT se.labels, (extract(epoch FROM s.time) * 1000000)::numeric(30, 0), s.value "
            "FROM samples s JOIN series se ON se.id = s.series_id WHERE se.name = %s "
            "ORDER BY s.time, se.labels::text", (name,)).fetchall()


@pytest.mark.parametrize("gzip", [False, True])
def test_influxdb_client_writes_every_precision(db_url, proxy_url, gzip):
    key = new_key(db_url, "ingest")
    base_ns = (time.time_ns() - 3_600 * 10**9) // 10**9 * 10**9 + 123_456_789  # an hour ago
    expected = []
    with InfluxDBClient(url=proxy_url, token=key, org="my-org", enable_gzip=gzip) as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        for i, (precision, unit_ns) in enumerate(PRECISIONS.items()):
            stamp = (base_ns + i * 10**9) // unit_ns  # a timestamp in this precision
            points = [
                Point("weather").tag("site", "roof").tag("precision", precision)
                .field("temp", 18.5 + i).field("samples", 3 + i).field("online", True)
                .time(stamp, precision),
                # A second point given as a datetime: the client converts it itself.
                Point("weather").tag("site", "cellar").tag("precision", precision)
                .field("temp", -2.25).time(datetime.fromtimestamp(stamp * unit_ns / 1e9, UTC),
                                           precision),
            ]
            write_api.write(bucket="my-bucket", record=points, write_precision=precision)
            stamp_us = stamp * unit_ns // 1000
            expected += [({"site": "roof", "precision": precision}, stamp_us, 18.5 + i),
                         ({"site": "cellar", "precision": precision}, None, -2.25)]
    got = rows(db_url, "weather_temp")
    assert len(got) == len(expected) == 8
    for labels, stamp_us, value in expected:
        match = [(t, v) for lab, t, v in got if lab == labels]
        assert len(match) == 1, (labels, got)
        t, v = match[0]
        assert v == value
        if stamp_us is not None:
            assert int(t) == stamp_us, (labels, t, stamp_us)
    # The datetime points are within a microsecond of the integer ones (datetimes
    # carry microseconds; ns-precision points are truncated to them).
    for precision in PRECISIONS:
        roof, cellar = ([t for lab, t, _ in got if lab == {"site": s, "precision": precision}][0]
                        for s in ("roof", "cellar"))
        assert abs(int(roof) - int(cellar)) <= 1
    assert {(lab["precision"], v) for lab, _, v in rows(db_url, "weather_samples")} == {
        (p, 3.0 + i) for i, p in enumerate(PRECISIONS)}
    assert {v for _, _, v in rows(db_url, "weather_online")} == {1.0}


def test_influxdb_client_sees_refused_lines_as_a_400_naming_them(db_url, proxy_url):
    key = new_key(db_url, "ingest")
    now = time.time_ns()
    lines = [f"app,host=a requests=1i {now}", f'app,host=a status="ok" {now}',
             f"app,host=b requests=2i {now}"]
    with InfluxDBClient(url=proxy_url, token=key, org="o") as client:
        write_api = client.write_api(write_options=SYNCHRONOUS)
        with pytest.raises(ApiException) as raised:
            write_api.write(bucket="b", record=lines)
    assert raised.value.status == 400
    assert "line 2: field 'status'" in raised.value.body
    assert "partial write" in raised.value.message or "partial write" in raised.value.body
    assert [(lab["host"], v) for lab, _, v in rows(db_url, "app_requests")] == [("a", 1.0),
                                                                                ("b", 2.0)]


def test_influxdb_client_with_a_wrong_token_is_unauthorized(db_url, proxy_url):
    with InfluxDBClient(url=proxy_url, token="pgpk_wrong", org="o") as client:
        with pytest.raises(ApiException) as raised:
            client.write_api(write_options=SYNCHRONOUS).write(bucket="b", record="m v=1")
    assert raised.value.status == 401
    assert rows(db_url, "m_v") == []
