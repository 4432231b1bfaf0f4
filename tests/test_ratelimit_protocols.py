"""The ingest rate limit holds for every protocol: pgpulse's JSON, Influx line protocol,
Prometheus remote write and OTLP each charge their samples to the same key and address,
and a batch over the limit is refused whole (nothing written) with Retry-After, in the
protocol's own error shape."""

from __future__ import annotations

import time

import cramjam
import psycopg
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from proxy_helpers import sample

from pgpulse.protocols.prompb import WriteRequest

OFF = {
    "PROXY_RATELIMIT_INGEST_PER_KEY": "off",
    "PROXY_RATELIMIT_QUERY_PER_KEY": "off",
    "PROXY_RATELIMIT_QUERY_PER_ADDRESS": "off",
    "PROXY_RATELIMIT_AUTH_FAILURES": "off",
}


def json_request(n: int, tag: str) -> tuple[str, bytes | dict, dict]:
    return "/api/ingest", {"metrics": [sample(i=f"{tag}{k}") for k in range(n)]}, {}


def influx_request(n: int, tag: str) -> tuple[str, bytes | dict, dict]:
    now = time.time_ns()
    lines = "\n".join(f"cpu,i={tag}{k} usage={k}.5 {now}" for k in range(n))
    return "/api/v2/write?precision=ns", lines.encode(), {"Content-Type": "text/plain"}


def remote_write_request(n: int, tag: str) -> tuple[str, bytes | dict, dict]:
    req = WriteRequest()
    now_ms = int(time.time() * 1000)
    for k in range(n):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value="up")
        ts.labels.add(name="i", value=f"{tag}{k}")
        ts.samples.add(value=1.0, timestamp=now_ms)
    headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}
    return "/api/v1/write", bytes(cramjam.snappy.compress_raw(req.SerializeToString())), headers


def otlp_request(n: int, tag: str) -> tuple[str, bytes | dict, dict]:
    points = [pb.NumberDataPoint(time_unix_nano=time.time_ns(), as_double=float(k),
                                 attributes=[KeyValue(key="i", value=AnyValue(string_value=f"{tag}{k}"))])
              for k in range(n)]
    message = ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        scope_metrics=[pb.ScopeMetrics(metrics=[pb.Metric(name="temp", gauge=pb.Gauge(data_points=points))])])])
    return "/v1/metrics", message.SerializeToString(), {"Content-Type": "application/x-protobuf"}


PROTOCOLS = {"json": json_request, "influx": influx_request,
             "remote_write": remote_write_request, "otlp": otlp_request}


def post(client, request):
    path, body, headers = request
    if isinstance(body, dict):
        return client.post(path, json=body, headers=headers)
    return client.post(path, data=body, headers=headers)


def count_samples(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM samples").fetchone()[0]


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_each_protocol_is_charged_and_refused_whole(make_app, db_url, protocol):
    app = make_app(**OFF, PROXY_RATELIMIT_INGEST_PER_ADDRESS="5/hour")
    client = app.test_client()
    build = PROTOCOLS[protocol]
    first = post(client, build(3, "a"))
    assert first.status_code in (200, 204), first.get_data(as_text=True)
    assert count_samples(db_url) == 3
    refused = post(client, build(3, "b"))
    assert refused.status_code == 429, refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) >= 1
    assert int(refused.headers["RateLimit-Limit"]) == 5
    assert count_samples(db_url) == 3, "a refused batch writes nothing"


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_protocols_share_one_count(make_app, db_url, protocol):
    """Samples sent by one protocol use up the limit of every other: the count is per
    address (or key), not per endpoint."""
    app = make_app(**OFF, PROXY_RATELIMIT_INGEST_PER_ADDRESS="4/hour")
    client = app.test_client()
    assert post(client, json_request(3, "j")).status_code == 200
    refused = post(client, PROTOCOLS[protocol](2, "p"))
    assert refused.status_code == 429, refused.get_data(as_text=True)
    assert count_samples(db_url) == 3
