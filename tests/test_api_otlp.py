"""POST /v1/metrics: OpenTelemetry's OTLP/HTTP metrics, from the real SDK and by hand.

The OpenTelemetry Python SDK exports with its own OTLP/HTTP exporters, protobuf
(``opentelemetry-exporter-otlp-proto-http``) and JSON
(``opentelemetry-exporter-otlp-json-http``), gzip-compressed, to a live proxy (a
real socket, auth on) on the test suite's PostgreSQL; what the store holds
afterwards is read back with SQL. Hand-made requests (the generated classes of
``opentelemetry-proto``) cover partial success, the status codes and bad input.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import psycopg
import pytest
import requests
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from proxy_helpers import live_proxy, new_key

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AGGREGATION_TEMPORALITY_DELTA
SCOPE = {"otel_scope_name": "pgpulse.tests", "otel_scope_version": "1.2.3"}
IDENTITY = {"job": "demo/shop", "instance": "shop-1"}
RESOURCE = {"service.name": "shop", "service.namespace": "demo", "service.instance.id": "shop-1",
            "deployment.environment": "test"}


# -- a live proxy and the SDK's exporters ------------------------------------------------


@pytest.fixture
def live(db_url: str) -> Iterator[str]:
    with live_proxy(db_url) as url:
        yield url


def exporter(encoding: str, url: str, key: str, **kwargs):
    """The SDK's OTLP/HTTP metric exporter of ``encoding``, gzip on."""
    headers = {"Authorization": f"Bearer {key}"}
    if encoding == PROTOBUF:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers=headers,
                                  compression=Compression.Gzip, timeout=30, **kwargs)
    from opentelemetry.exporter.otlp.common.http import Compression as JsonCompression
    from opentelemetry.exporter.otlp.json.http.metric_exporter import (
        OTLPMetricExporter as JsonExporter,
    )
    return JsonExporter(endpoint=f"{url}/v1/metrics", headers=headers,
                        compression=JsonCompression.GZIP, timeout=30, **kwargs)


def provider(exp) -> MeterProvider:
    # Exports only when flushed: the test decides when a collection goes out.
    reader = PeriodicExportingMetricReader(exp, export_interval_millis=3_600_000)
    return MeterProvider(resource=Resource.create(RESOURCE), metric_readers=[reader])


def stored(db_url: str) -> dict[tuple[str, frozenset], list[tuple[float, str]]]:
    """(name, labels) -> [(value, series type), ...] oldest first."""
    out: dict[tuple[str, frozenset], list[tuple[float, str]]] = {}
    with psycopg.connect(db_url) as conn:
        for name, labels, typ, value in conn.execute(
                "SELECT se.name, se.labels, se.type, s.value FROM samples s "
                "JOIN series se ON se.id = s.series_id ORDER BY s.time, se.id"):
            out.setdefault((name, frozenset(labels.items())), []).append((value, typ))
    return out


def metadata(db_url: str) -> dict[str, tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        return {n: (t, h, u) for n, t, h, u in
                conn.execute("SELECT name, type, help, unit FROM metric_metadata")}


def key_of(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset({**IDENTITY, **SCOPE, **labels}.items())


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_every_instrument_of_the_sdk_arrives_as_the_mapping_says(db_url, live, encoding):
    key = new_key(db_url, "ingest")
    mp = provider(exporter(encoding, live, key))
    try:
        meter = mp.get_meter("pgpulse.tests", "1.2.3")
        requests_counter = meter.create_counter("http.server.requests", unit="{request}",
                                                description="Requests served")
        depth = meter.create_up_down_counter("queue.depth", unit="{item}")
        meter.create_observable_gauge(
            "cpu.utilization", unit="1", description="Busy share",
            callbacks=[lambda _options: [Observation(0.25, {"cpu": "0"}),
                                         Observation(0.75, {"cpu": "1"})]])
        temperature = meter.create_gauge("room.temperature", unit="Cel")
        duration = meter.create_histogram("http.server.duration", unit="s",
                                          explicit_bucket_boundaries_advisory=[0.005, 0.1, 1.0])
        requests_counter.add(3, {"http.method": "GET", "http.status_code": 200})
        requests_counter.add(1, {"http.method": "POST", "http.status_code": 500})
        depth.add(5)
        depth.add(-2)
        temperature.set(21.5, {"room": "lab"})
        for seconds in (0.003, 0.2, 0.05, 7.0):
            duration.record(seconds, {"http.route": "/cart"})
        assert mp.force_flush(60_000)

        found = stored(db_url)
        get = lambda name, **labels: found.get(key_of(name, **labels))  # noqa: E731
        assert get("http_server_requests_total", http_method="GET", http_status_code="200") == [(3.0, "counter")]
        assert get("http_server_requests_total", http_method="POST", http_status_code="500") == [(1.0, "counter")]
        assert get("queue_depth") == [(3.0, "gauge")]
        assert get("cpu_utilization_ratio", cpu="0") == [(0.25, "gauge")]
        assert get("cpu_utilization_ratio", cpu="1") == [(0.75, "gauge")]
        assert get("room_temperature_celsius", room="lab") == [(21.5, "gauge")]
        route = {"http_route": "/cart"}
        buckets = {le: get("http_server_duration_seconds_bucket", le=le, **route)
                   for le in ("0.005", "0.1", "1", "+Inf")}
        assert buckets == {"0.005": [(1.0, "counter")], "0.1": [(2.0, "counter")],
                           "1": [(3.0, "counter")], "+Inf": [(4.0, "counter")]}
        assert get("http_server_duration_seconds_count", **route) == [(4.0, "counter")]
        [(total_seconds, typ)] = get("http_server_duration_seconds_sum", **route)
        assert total_seconds == pytest.approx(7.253) and typ == "counter"
        info = [labels for (name, labels) in found if name == "target_info"]
        assert len(info) == 1 and dict(info[0]) == {
            **IDENTITY, "deployment_environment": "test", "telemetry_sdk_language": "python",
            "telemetry_sdk_name": "opentelemetry",
            "telemetry_sdk_version": dict(info[0])["telemetry_sdk_version"]}
        assert len(found) == 2 + 1 + 2 + 1 + 4 + 2 + 1  # nothing else was made
        assert metadata(db_url) == {
            "http_server_requests_total": ("counter", "Requests served", ""),
            "queue_depth": ("gauge", "", ""),
            "cpu_utilization_ratio": ("gauge", "Busy share", "ratio"),
            "room_temperature_celsius": ("gauge", "", "celsius"),
            "http_server_duration_seconds": ("histogram", "", "seconds"),
            "target_info": ("gauge", "Target metadata", ""),
        }

        # The next collection: cumulative values go on from where they were.
        requests_counter.add(2, {"http.method": "GET", "http.status_code": 200})
        duration.record(0.5, {"http.route": "/cart"})
        assert mp.force_flush(60_000)
        found = stored(db_url)
        assert [v for v, _ in found[key_of("http_server_requests_total", http_method="GET",
                                           http_status_code="200")]] == [3.0, 5.0]
        assert [v for v, _ in found[key_of("http_server_duration_seconds_bucket", le="1",
                                           **route)]] == [3.0, 4.0]
        assert [v for v, _ in found[key_of("queue_depth")]] == [3.0, 3.0]
    finally:
        mp.shutdown()


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_a_delta_exporter_has_its_counters_refused_and_the_rest_kept(db_url, live, encoding):
    key = new_key(db_url, "ingest")
    exp = exporter(encoding, live, key, preferred_temporality={
        Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.CUMULATIVE})
    mp = provider(exp)
    try:
        meter = mp.get_meter("pgpulse.tests", "1.2.3")
        meter.create_counter("jobs.done").add(4)
        meter.create_histogram("job.duration", unit="ms").record(12.0)
        # A partial success is a success for the exporter: it must not retry.
        assert mp.force_flush(60_000)
        names = {name for name, _ in stored(db_url)}
        assert names == {"job_duration_milliseconds_bucket", "job_duration_milliseconds_count",
                         "job_duration_milliseconds_sum", "target_info"}
    finally:
        mp.shutdown()


def test_the_documented_environment_variables_configure_the_sdk(db_url, live, monkeypatch):
    """docs/sending-data.md's copy-paste SDK settings, read by the exporter itself."""
    key = new_key(db_url, "ingest")
    for name, value in {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{live}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS": f"Authorization=Bearer%20{key}",
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "cumulative",
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "explicit_bucket_histogram",
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop,service.instance.id=checkout-1",
    }.items():
        monkeypatch.setenv(name, value)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
    mp = MeterProvider(resource=Resource.create(), metric_readers=[reader])
    try:
        mp.get_meter("app").create_histogram("checkout.duration", unit="ms").record(42.0)
        assert mp.force_flush(60_000)
        found = stored(db_url)
        labels = frozenset({"job": "shop/checkout", "instance": "checkout-1",
                            "otel_scope_name": "app"}.items())
        assert found[("checkout_duration_milliseconds_count", labels)] == [(1.0, "counter")]
        assert found[("checkout_duration_milliseconds_sum", labels)] == [(42.0, "counter")]
    finally:
        mp.shutdown()


# -- hand-made requests -------------------------------------------------------------------


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def now_ns() -> int:
    return time.time_ns() - 2_000_000_000


def gauge(name: str, *values: float, **labels: str) -> pb.Metric:
    return pb.Metric(name=name, gauge=pb.Gauge(data_points=[
        pb.NumberDataPoint(time_unix_nano=now_ns() + i, as_double=v,
                           attributes=[kv(k, x) for k, x in labels.items()])
        for i, v in enumerate(values)]))


def delta_sum(name: str, value: int) -> pb.Metric:
    return pb.Metric(name=name, sum=pb.Sum(is_monotonic=True, aggregation_temporality=DELTA,
                                           data_points=[pb.NumberDataPoint(time_unix_nano=now_ns(),
                                                                           as_int=value)]))


def export_request(*metrics: pb.Metric) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource={"attributes": [kv("service.name", "hand")]},
        scope_metrics=[pb.ScopeMetrics(metrics=list(metrics))])])


def body_of(message, encoding: str) -> bytes:
    if encoding == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message).encode()


def post(client, message_or_body, encoding: str = PROTOBUF, **headers):
    body = message_or_body if isinstance(message_or_body, bytes) else body_of(message_or_body, encoding)
    return client.post("/v1/metrics", data=body, headers={"Content-Type": encoding, **headers})


def answer(r, encoding: str) -> ExportMetricsServiceResponse:
    assert r.status_code == 200, r.data
    assert r.mimetype == encoding
    message = ExportMetricsServiceResponse()
    if encoding == PROTOBUF:
        message.ParseFromString(r.data)
    else:
        json_format.Parse(r.data, message)
    return message


def failure(r, status: int, encoding: str = JSON) -> status_pb2.Status:
    """The response is an OTLP failure: ``status`` with a google.rpc.Status body."""
    assert r.status_code == status, r.data
    assert r.mimetype == encoding
    message = status_pb2.Status()
    if encoding == PROTOBUF:
        message.ParseFromString(r.data)
    else:
        json_format.Parse(r.data, message)
    assert message.message
    return message


def names(db_url: str) -> set[str]:
    return {name for name, _ in stored(db_url)}


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_one_bad_metric_among_good_ones_is_a_partial_success(client, db_url, encoding):
    r = post(client, export_request(gauge("good", 1.0, 2.0), delta_sum("bad", 3),
                                    gauge("nan", float("nan"), 5.0)), encoding)
    partial = answer(r, encoding).partial_success
    assert partial.rejected_data_points == 2
    assert partial.error_message.startswith("2 of 5 data points rejected")
    assert "'bad'" in partial.error_message and "cumulative" in partial.error_message
    assert "'nan'" in partial.error_message and "not a finite number" in partial.error_message
    found = stored(db_url)
    assert [v for v, _ in found[("good", frozenset({"job": "hand"}.items()))]] == [1.0, 2.0]
    assert [v for v, _ in found[("nan", frozenset({"job": "hand"}.items()))]] == [5.0]
    assert names(db_url) == {"good", "nan"}


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_a_full_success_leaves_partial_success_unset(client, encoding):
    message = answer(post(client, export_request(gauge("g", 1.0)), encoding), encoding)
    assert not message.HasField("partial_success")
    # An empty request is a success too.
    assert not answer(post(client, ExportMetricsServiceRequest(), encoding), encoding).HasField(
        "partial_success")


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_a_request_of_which_nothing_can_be_stored_is_a_400(client, db_url, encoding):
    status = failure(post(client, export_request(delta_sum("a", 1), delta_sum("b", 2)), encoding),
                     400, encoding)
    assert "2 of 2 data points rejected" in status.message
    [detail] = status.details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad) and bad.field_violations[0].description == status.message
    assert names(db_url) == set()


def test_a_series_the_store_has_as_another_type_refuses_only_its_metric(client, db_url):
    r = client.post("/api/ingest", json={"metrics": [
        {"name": "queue_depth", "labels": {"job": "hand"}, "value": 1, "type": "counter"}]})
    assert r.status_code == 200, r.json
    updown = pb.Metric(name="queue.depth", sum=pb.Sum(
        is_monotonic=False, aggregation_temporality=CUMULATIVE,
        data_points=[pb.NumberDataPoint(time_unix_nano=now_ns(), as_int=4)]))
    partial = answer(post(client, export_request(updown, gauge("fine", 7.0))), PROTOBUF).partial_success
    assert partial.rejected_data_points == 1
    assert "'queue.depth'" in partial.error_message and "counter" in partial.error_message
    assert [v for v, _ in stored(db_url)[("fine", frozenset({"job": "hand"}.items()))]] == [7.0]
    assert [v for v, _ in stored(db_url)[("queue_depth", frozenset({"job": "hand"}.items()))]] == [1.0]


def test_a_metric_past_its_series_limit_is_refused_alone(make_app, db_url):
    client = make_app(PROXY_MAX_SERIES_PER_METRIC=2).test_client()
    wide = gauge("wide", 1.0, shard="a")
    for shard in ("b", "c"):
        wide.gauge.data_points.add(time_unix_nano=now_ns(), as_double=1.0,
                                   attributes=[kv("shard", shard)])
    partial = answer(post(client, export_request(wide, gauge("narrow", 2.0))), PROTOBUF).partial_success
    assert partial.rejected_data_points == 3
    assert "series limit of metric 'wide'" in partial.error_message
    assert names(db_url) == {"narrow"}


def test_the_overall_series_limit_is_a_retryable_429(make_app, db_url):
    client = make_app(PROXY_MAX_SERIES=2, PROXY_MAX_SERIES_PER_METRIC=2).test_client()
    r = post(client, export_request(gauge("a", 1.0), gauge("b", 1.0), gauge("c", 1.0)), PROTOBUF)
    status = failure(r, 429, PROTOBUF)
    assert "series limit" in status.message
    assert int(r.headers["Retry-After"]) > 0
    assert names(db_url) == set()


def test_more_samples_than_a_request_may_carry_is_a_413(make_app, db_url):
    client = make_app(PROXY_MAX_SAMPLES_PER_REQUEST=3).test_client()
    status = failure(post(client, export_request(gauge("g", 1.0, 2.0, 3.0, 4.0)), JSON), 413)
    assert "PROXY_MAX_SAMPLES_PER_REQUEST" in status.message
    # A histogram of many buckets is counted before it is mapped.
    wide = pb.Metric(name="h", histogram=pb.Histogram(aggregation_temporality=CUMULATIVE, data_points=[
        pb.HistogramDataPoint(time_unix_nano=now_ns(), count=0, explicit_bounds=range(100_000))]))
    status = failure(post(client, export_request(wide), PROTOBUF), 413, PROTOBUF)
    assert "100004 samples" in status.message
    assert names(db_url) == set()


def test_keys_are_checked_and_refusals_come_in_the_request_encoding(make_app, db_url):
    client = make_app(PGPULSE_AUTH="on").test_client()
    message = export_request(gauge("g", 1.0))
    assert failure(post(client, message, PROTOBUF), 401, PROTOBUF).code == 16
    query_key = new_key(db_url, "query")
    failure(post(client, message, JSON, Authorization=f"Bearer {query_key}"), 403, JSON)
    ingest_key = new_key(db_url, "ingest")
    answer(post(client, message, PROTOBUF, Authorization=f"Bearer {ingest_key}"), PROTOBUF)
    assert names(db_url) == {"g"}


# -- bad input: a clear 4xx in OTLP's envelope, nothing written, never a 500 ----------------


def test_truncated_protobuf_is_a_400(client, db_url):
    body = export_request(gauge("g", 1.0, 2.0, 3.0)).SerializeToString()
    status = failure(post(client, body[: len(body) - 5], PROTOBUF), 400, PROTOBUF)
    assert "not a protobuf ExportMetricsServiceRequest" in status.message
    assert names(db_url) == set()


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "",
                                          "application/grpc"])
def test_a_content_type_other_than_protobuf_or_json_is_a_415(client, content_type):
    body = export_request(gauge("g", 1.0)).SerializeToString()
    r = client.post("/v1/metrics", data=body, headers={"Content-Type": content_type} if content_type else {})
    status = failure(r, 415, JSON)
    assert "application/x-protobuf" in status.message


@pytest.mark.parametrize("body", [b'{"resourceMetrics": [', b"[]", b"not json",
                                  b'{"resourceMetrics": [{"scopeMetrics": 7}]}', b"\xff\xfe"])
def test_bad_json_is_a_400(client, db_url, body):
    status = failure(post(client, body, JSON), 400, JSON)
    assert "JSON" in status.message
    assert names(db_url) == set()


def test_a_gzip_bomb_is_a_413_and_bad_gzip_a_400(make_app, db_url):
    client = make_app(PROXY_MAX_BODY_BYTES=1 << 20).test_client()
    bomb = gzip.compress(b"\x00" * (8 << 20))  # 8 MiB of zeros in a few KiB
    assert len(bomb) < 64 << 10
    status = failure(post(client, bomb, PROTOBUF, **{"Content-Encoding": "gzip"}), 413, PROTOBUF)
    assert "decompressed" in status.message
    failure(post(client, b"\x1f\x8b not gzip", PROTOBUF, **{"Content-Encoding": "gzip"}), 400, PROTOBUF)
    failure(post(client, b"x", PROTOBUF, **{"Content-Encoding": "deflate"}), 415, PROTOBUF)
    assert names(db_url) == set()


def test_gzip_bodies_are_read(client, db_url):
    body = gzip.compress(body_of(export_request(gauge("zipped", 3.0)), JSON))
    answer(post(client, body, JSON, **{"Content-Encoding": "gzip"}), JSON)
    assert names(db_url) == {"zipped"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), encoding=st.sampled_from([PROTOBUF, JSON]))
def test_random_bodies_never_make_a_500(client, body, encoding):
    r = post(client, body, encoding)
    assert r.status_code in (200, 400), r.data
    if r.status_code == 400:
        failure(r, 400, encoding)


_text = st.text(max_size=12)
_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63 - 1))


@st.composite
def _metric(draw) -> pb.Metric:
    name = draw(st.sampled_from(["g", "a.b", "", "9x", "h", "dup", "x" * 250]))
    unit = draw(st.sampled_from(["", "s", "1", "By/s", "{x}"]))
    attrs = [kv(draw(_text), draw(_text)) for _ in range(draw(st.integers(0, 3)))]
    t = draw(st.sampled_from([0, now_ns(), now_ns() - 10**18, 2**64 - 1]))
    kind = draw(st.sampled_from(["gauge", "sum", "histogram", "summary", "exp", "none"]))
    value = draw(_values)
    number = (pb.NumberDataPoint(time_unix_nano=t, as_double=float(value), attributes=attrs)
              if isinstance(value, float) else
              pb.NumberDataPoint(time_unix_nano=t, as_int=value, attributes=attrs))
    number.flags = draw(st.sampled_from([0, 1, 7]))
    if kind == "gauge":
        return pb.Metric(name=name, unit=unit, gauge=pb.Gauge(data_points=[number]))
    if kind == "sum":
        return pb.Metric(name=name, unit=unit, sum=pb.Sum(
            is_monotonic=draw(st.booleans()), aggregation_temporality=draw(st.sampled_from([0, 1, 2])),
            data_points=[number]))
    if kind == "histogram":
        bounds = draw(st.lists(st.floats(allow_nan=True), max_size=3))
        counts = draw(st.lists(st.integers(0, 2**64 - 1), max_size=4))
        return pb.Metric(name=name, unit=unit, histogram=pb.Histogram(
            aggregation_temporality=draw(st.sampled_from([0, 1, 2])),
            data_points=[pb.HistogramDataPoint(time_unix_nano=t, count=draw(st.integers(0, 2**64 - 1)),
                                               sum=draw(st.floats()), bucket_counts=counts,
                                               explicit_bounds=bounds, attributes=attrs)]))
    if kind == "summary":
        return pb.Metric(name=name, summary=pb.Summary(data_points=[pb.SummaryDataPoint(
            time_unix_nano=t, count=draw(st.integers(0, 2**64 - 1)), sum=draw(st.floats()),
            quantile_values=[pb.SummaryDataPoint.ValueAtQuantile(quantile=draw(st.floats()),
                                                                 value=draw(st.floats()))])]))
    if kind == "exp":
        return pb.Metric(name=name, exponential_histogram=pb.ExponentialHistogram(
            aggregation_temporality=2, data_points=[pb.ExponentialHistogramDataPoint(time_unix_nano=t)]))
    return pb.Metric(name=name)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metrics=st.lists(_metric(), max_size=5), encoding=st.sampled_from([PROTOBUF, JSON]))
def test_random_well_formed_requests_never_make_a_500(client, metrics, encoding):
    message = export_request(*metrics)
    r = post(client, message, encoding)
    assert r.status_code in (200, 400), r.data
    if r.status_code == 200:
        partial = answer(r, encoding).partial_success
        assert partial.rejected_data_points <= len(metrics)
    else:
        failure(r, 400, encoding)


def test_the_live_proxy_answers_a_plain_http_client(db_url, live):
    """Through a real socket with requests (what a Collector's otlphttp exporter sees)."""
    key = new_key(db_url, "ingest")
    r = requests.post(f"{live}/v1/metrics", data=gzip.compress(
        export_request(gauge("wire", 1.0)).SerializeToString()), timeout=60,
        headers={"Content-Type": PROTOBUF, "Content-Encoding": "gzip",
                 "Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.headers["Content-Type"] == PROTOBUF
    assert names(db_url) == {"wire"}
