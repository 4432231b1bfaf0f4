"""The OTLP -> Prometheus mapping of pgpulse/protocols/otlp.py, without a database.

Requests are built with the generated classes of the ``opentelemetry-proto``
package; each case says what the OpenTelemetry specification's Prometheus
compatibility section asks for.
"""

from __future__ import annotations

import math
import time

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from pgpulse.protocols import otlp
from pgpulse.store.batch import PG_EPOCH_US
from pgpulse.store.series import SeriesLimits

CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AGGREGATION_TEMPORALITY_DELTA
LIMITS = SeriesLimits()


def now_ns() -> int:
    return time.time_ns() - 5_000_000_000


def window(past_s: int = 3600, future_s: int = 600) -> otlp.Window:
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    return otlp.Window(now_us - past_s * 1_000_000, now_us + future_s * 1_000_000, past_s, future_s)


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def attrs(**labels: object) -> list[KeyValue]:
    return [kv(k.replace("__", "."), v) for k, v in labels.items()]


def request(*metrics: pb.Metric, resource: dict[str, str] | None = None,
            scope: tuple[str, str] = ("", "")) -> ExportMetricsServiceRequest:
    res = {"service.name": "shop"} if resource is None else resource
    return ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource={"attributes": [kv(k, v) for k, v in res.items()]},
        scope_metrics=[pb.ScopeMetrics(scope={"name": scope[0], "version": scope[1]},
                                       metrics=list(metrics))])])


def gauge(name: str, *values: float, unit: str = "", t: int | None = None, **labels) -> pb.Metric:
    t = t or now_ns()
    return pb.Metric(name=name, unit=unit, gauge=pb.Gauge(data_points=[
        pb.NumberDataPoint(time_unix_nano=t + i, as_double=v, attributes=attrs(**labels))
        for i, v in enumerate(values)]))


def total(name: str, value: float, *, monotonic: bool = True, temporality: int = CUMULATIVE,
          unit: str = "", **labels) -> pb.Metric:
    return pb.Metric(name=name, unit=unit, sum=pb.Sum(
        is_monotonic=monotonic, aggregation_temporality=temporality,
        data_points=[pb.NumberDataPoint(time_unix_nano=now_ns(), as_int=int(value),
                                        attributes=attrs(**labels))]))


def samples_of(tr: otlp.Translation) -> dict[tuple[str, tuple], list[float]]:
    out: dict[tuple[str, tuple], list[float]] = {}
    for _, k, v in tr.batch.rows:
        key = tr.batch.keys[k]
        out.setdefault((key.name, tuple(sorted(key.labels.items()))), []).append(v)
    return out


def types_of(tr: otlp.Translation) -> dict[str, str]:
    return {key.name: key.type for key in tr.batch.keys}


# -- names and units ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "unit", "kind", "expected"), [
    ("http.server.duration", "s", "histogram", "http_server_duration_seconds"),
    ("http.server.request.size", "By", "histogram", "http_server_request_size_bytes"),
    ("requests", "{request}", "counter", "requests_total"),
    ("requests_total", "", "counter", "requests_total"),
    ("cpu.time", "s", "counter", "cpu_time_seconds_total"),
    ("cpu_time_total", "s", "counter", "cpu_time_seconds_total"),  # unit before _total
    ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
    ("packets", "{packet}/s", "updown", "packets_per_second"),
    ("memory.utilization", "1", "gauge", "memory_utilization_ratio"),
    ("memory.utilization", "1", "updown", "memory_utilization"),  # ratio only for gauges
    ("disk.free", "MiBy", "gauge", "disk_free_mebibytes"),
    ("request_duration_seconds", "s", "histogram", "request_duration_seconds"),  # unit held
    ("temp", "Cel", "gauge", "temp_celsius"),
    ("load", "%", "gauge", "load_percent"),
    ("a..b--c", "", "gauge", "a_b_c"),
    ("2xx.count", "", "gauge", "_2xx_count"),
    ("ns:name", "ms", "gauge", "ns:name_milliseconds"),
    ("weird", "furlong", "gauge", "weird_furlong"),
])
def test_metric_names_and_units(name, unit, kind, expected):
    assert otlp.metric_name(name, unit, kind)[0] == expected


@pytest.mark.parametrize(("key", "expected"), [
    ("http.method", "http_method"), ("service-version", "service_version"),
    ("9lives", "key_9lives"), ("a..b", "a_b"), ("__x", "_x"), ("ok_name", "ok_name"),
])
def test_label_names(key, expected):
    assert otlp.label_name(key) == expected


def test_attribute_values_as_text():
    values = {
        "s": AnyValue(string_value="x"), "b": AnyValue(bool_value=True),
        "i": AnyValue(int_value=-42), "d": AnyValue(double_value=0.5),
        "w": AnyValue(double_value=3.0),
        "a": AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1),
                                                     AnyValue(string_value="two")])),
        "m": AnyValue(kvlist_value=KeyValueList(values=[kv("k", "v")])),
        "y": AnyValue(bytes_value=b"\x00\x01"),
    }
    assert {k: otlp.attribute_text(v) for k, v in values.items()} == {
        "s": "x", "b": "true", "i": "-42", "d": "0.5", "w": "3", "a": '[1,"two"]',
        "m": '{"k":"v"}', "y": "AAE=",
    }


def test_attributes_that_become_one_label_are_joined_in_key_order():
    labels = otlp.attribute_labels([kv("a_b", "second"), kv("a.b", "first"), kv("c", "x"),
                                    kv("empty", "")])
    assert labels == {"a_b": "first;second", "c": "x"}  # "." sorts before "_"; empty: no label


# -- data types -------------------------------------------------------------------------


def test_gauge_and_cumulative_sums():
    tr = otlp.translate(request(
        gauge("temperature", 21.5, unit="Cel", room="a"),
        total("http.requests", 7, unit="{request}", method="GET"),
        total("queue.depth", 3, monotonic=False),
    ), LIMITS, window())
    assert (tr.points, tr.rejected, tr.problems) == (3, 0, [])
    assert samples_of(tr) == {
        ("temperature_celsius", (("job", "shop"), ("room", "a"))): [21.5],
        ("http_requests_total", (("job", "shop"), ("method", "GET"))): [7.0],
        ("queue_depth", (("job", "shop"),)): [3.0],
    }
    assert types_of(tr) == {"temperature_celsius": "gauge", "http_requests_total": "counter",
                            "queue_depth": "gauge"}
    assert tr.batch.metadata == {
        "temperature_celsius": ("gauge", "", "celsius"),
        "http_requests_total": ("counter", "", ""),
        "queue_depth": ("gauge", "", ""),
    }


def test_delta_sums_and_histograms_are_refused_with_the_exporter_setting_to_change():
    delta_hist = pb.Metric(name="latency", histogram=pb.Histogram(
        aggregation_temporality=DELTA, data_points=[pb.HistogramDataPoint(
            time_unix_nano=now_ns(), count=1, sum=1.0, bucket_counts=[1, 0], explicit_bounds=[2.0])]))
    tr = otlp.translate(request(total("reqs", 5, temporality=DELTA), delta_hist, gauge("ok", 1.0)),
                        LIMITS, window())
    assert (tr.points, tr.rejected) == (3, 2)
    assert list(samples_of(tr)) == [("ok", (("job", "shop"),))]
    message = tr.error_message()
    assert message.startswith("2 of 3 data points rejected")
    assert "'reqs'" in message and "'latency'" in message
    assert "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative" in message
    assert set(tr.batch.metadata) == {"ok"}  # no word on families that were refused


def test_exponential_histograms_are_refused_clearly():
    exp = pb.Metric(name="lat", exponential_histogram=pb.ExponentialHistogram(
        aggregation_temporality=CUMULATIVE,
        data_points=[pb.ExponentialHistogramDataPoint(time_unix_nano=now_ns(), count=2, scale=3)]))
    tr = otlp.translate(request(exp), LIMITS, window())
    assert (tr.points, tr.rejected, tr.batch.rows) == (1, 1, [])
    assert "explicit_bucket_histogram" in tr.error_message()


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    h = pb.Metric(name="http.server.duration", unit="s", description="How long",
                  histogram=pb.Histogram(aggregation_temporality=CUMULATIVE, data_points=[
                      pb.HistogramDataPoint(time_unix_nano=now_ns(), count=6, sum=12.5,
                                            bucket_counts=[1, 2, 0, 3],
                                            explicit_bounds=[0.005, 0.1, 1.0],
                                            attributes=attrs(route="/"))]))
    tr = otlp.translate(request(h), LIMITS, window())
    base = (("job", "shop"), ("route", "/"))
    name = "http_server_duration_seconds"
    assert samples_of(tr) == {
        **{(name + "_bucket", tuple(sorted((*base, ("le", le))))): [v]
           for le, v in (("0.005", 1.0), ("0.1", 3.0), ("1", 3.0), ("+Inf", 6.0))},
        (name + "_count", base): [6.0],
        (name + "_sum", base): [12.5],
    }
    assert set(types_of(tr).values()) == {"counter"}
    assert tr.batch.metadata == {name: ("histogram", "How long", "seconds")}


@pytest.mark.parametrize(("counts", "bounds", "count", "why"), [
    ([1, 2], [1.0, 2.0], 3, "2 bucket counts for 2 explicit bounds"),
    ([1, 2, 3], [2.0, 1.0], 6, "increasing"),
    ([1, 1, 1], [1.0, 2.0], 5, "add up to 3, the count is 5"),
])
def test_inconsistent_histogram_points_are_refused(counts, bounds, count, why):
    h = pb.Metric(name="h", histogram=pb.Histogram(aggregation_temporality=CUMULATIVE, data_points=[
        pb.HistogramDataPoint(time_unix_nano=now_ns(), count=count, bucket_counts=counts,
                              explicit_bounds=bounds)]))
    tr = otlp.translate(request(h, gauge("g", 1.0)), LIMITS, window())
    assert (tr.points, tr.rejected) == (2, 1)
    assert why in tr.error_message()


def test_histogram_sum_is_left_out_when_an_observation_was_negative():
    h = pb.Metric(name="delta_t", histogram=pb.Histogram(aggregation_temporality=CUMULATIVE, data_points=[
        pb.HistogramDataPoint(time_unix_nano=now_ns(), count=2, sum=3.0, min=-1.0, max=4.0,
                              bucket_counts=[1, 1], explicit_bounds=[0.0])]))
    tr = otlp.translate(request(h), LIMITS, window())
    assert "delta_t_sum" not in types_of(tr)
    assert "delta_t_count" in types_of(tr)


def test_summary_quantiles_sum_and_count():
    s = pb.Metric(name="rpc.latency", unit="ms", summary=pb.Summary(data_points=[
        pb.SummaryDataPoint(time_unix_nano=now_ns(), count=10, sum=55.0, quantile_values=[
            pb.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=9.5),
            pb.SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=5.0),
            pb.SummaryDataPoint.ValueAtQuantile(quantile=1.0, value=float("nan"))])]))
    tr = otlp.translate(request(s), LIMITS, window())
    name = "rpc_latency_milliseconds"
    assert samples_of(tr) == {
        (name, (("job", "shop"), ("quantile", "0.5"))): [5.0],
        (name, (("job", "shop"), ("quantile", "0.99"))): [9.5],
        (name + "_count", (("job", "shop"),)): [10.0],
        (name + "_sum", (("job", "shop"),)): [55.0],
    }
    assert types_of(tr) == {name: "gauge", name + "_count": "counter", name + "_sum": "counter"}
    assert tr.rejected == 0  # a NaN quantile (no observations) is no value, not an error


def test_points_with_values_or_times_the_store_refuses():
    old = (time.time_ns() - 7200 * 10**9)
    tr = otlp.translate(request(
        gauge("g", 1.0, float("nan"), float("inf"), 4.0),
        gauge("old", 1.0, t=old),
        pb.Metric(name="untimed", gauge=pb.Gauge(data_points=[pb.NumberDataPoint(as_double=1.0)])),
        pb.Metric(name="valueless", gauge=pb.Gauge(data_points=[
            pb.NumberDataPoint(time_unix_nano=now_ns())])),
    ), LIMITS, window(past_s=3600))
    assert (tr.points, tr.rejected) == (7, 5)
    assert samples_of(tr) == {("g", (("job", "shop"),)): [1.0, 4.0]}
    message = tr.error_message()
    for why in ("not a finite number", "outside the accepted window", "without time_unix_nano",
                "without a value"):
        assert why in message


def test_no_recorded_value_becomes_staleness_markers():
    flag = pb.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    t = now_ns()
    m = pb.Metric(name="g", gauge=pb.Gauge(data_points=[
        pb.NumberDataPoint(time_unix_nano=t, as_double=2.0, attributes=attrs(k="live")),
        pb.NumberDataPoint(time_unix_nano=t, flags=flag, attributes=attrs(k="gone"))]))
    tr = otlp.translate(request(m), LIMITS, window())
    assert tr.rejected == 0
    assert [tr.batch.keys[k].labels["k"] for _, k, _ in tr.batch.rows] == ["live"]
    assert [(tr.batch.keys[k].labels["k"], when) for when, k in tr.batch.stale] == [
        ("gone", t // 1000 - PG_EPOCH_US)]


# -- resources and scopes ---------------------------------------------------------------


def test_resource_attributes_make_job_instance_and_target_info():
    tr = otlp.translate(request(
        gauge("g", 1.0, job="from-attribute"),
        resource={"service.name": "cart", "service.namespace": "shop",
                  "service.instance.id": "pod-7", "host.name": "node-1", "cloud.region": "eu"},
        scope=("io.opentelemetry.http", "1.0.0"),
    ), LIMITS, window())
    found = samples_of(tr)
    assert found[("g", (("instance", "pod-7"), ("job", "shop/cart"),
                        ("otel_scope_name", "io.opentelemetry.http"),
                        ("otel_scope_version", "1.0.0")))] == [1.0]
    assert found[("target_info", (("cloud_region", "eu"), ("host_name", "node-1"),
                                  ("instance", "pod-7"), ("job", "shop/cart")))] == [1.0]
    assert tr.batch.rows[0][0] == tr.batch.rows[1][0]  # target_info at the points' time


def test_a_resource_with_only_its_service_has_no_target_info_nor_instance():
    tr = otlp.translate(request(gauge("g", 1.0), resource={"service.name": "solo"}), LIMITS, window())
    assert list(samples_of(tr)) == [("g", (("job", "solo"),))]


def test_labels_beyond_the_store_limits_refuse_their_points():
    limits = SeriesLimits(max_labels=3, max_label_value_len=8)
    tr = otlp.translate(request(
        gauge("g", 1.0, a="1", b="2", c="3"),  # with job: 4 labels
        gauge("h", 1.0, a="x" * 9),
        gauge("ok", 1.0, a="1"),
    ), limits, window())
    assert (tr.points, tr.rejected) == (3, 2)
    assert list(samples_of(tr)) == [("ok", (("a", "1"), ("job", "shop")))]
    assert "more than 3 labels" in tr.error_message()


def test_one_series_sent_as_two_types_refuses_the_later_points():
    tr = otlp.translate(request(gauge("x_count", 1.0), pb.Metric(name="x", histogram=pb.Histogram(
        aggregation_temporality=CUMULATIVE, data_points=[pb.HistogramDataPoint(
            time_unix_nano=now_ns(), count=1, sum=1.0)]))), LIMITS, window())
    assert (tr.points, tr.rejected) == (2, 1)
    assert "x_count is a gauge elsewhere in this request" in tr.error_message()


def test_drop_metric_takes_out_its_rows_series_and_metadata():
    tr = otlp.translate(request(gauge("a", 1.0, 2.0), total("b", 3), gauge("c", 4.0)), LIMITS, window())
    assert tr.points == 4
    b = tr.metric_names.index("b")
    tr.drop_metric(b, "refused by the store")
    assert samples_of(tr) == {("a", (("job", "shop"),)): [1.0, 2.0], ("c", (("job", "shop"),)): [4.0]}
    assert [k.name for k in tr.batch.keys] == ["a", "c"]
    assert set(tr.batch.metadata) == {"a", "c"}
    assert tr.rejected == 1 and "metric 'b': refused by the store" in tr.error_message()
    assert all(0 <= k < len(tr.batch.keys) for _, k, _ in tr.batch.rows)


def test_decode_refuses_what_is_not_a_request():
    good = request(gauge("g", 1.0)).SerializeToString()
    assert otlp.decode(good, otlp.PROTOBUF).resource_metrics[0].scope_metrics[0].metrics[0].name == "g"
    for body, encoding in [(good[:-3], otlp.PROTOBUF), (b"\xff\xff\xff", otlp.PROTOBUF),
                           (b"{", otlp.JSON), (b"[]", otlp.JSON), (b'"x"', otlp.JSON),
                           (b'{"resourceMetrics": 5}', otlp.JSON), (b"\xff", otlp.JSON),
                           (b"[" * 5000 + b"]" * 5000, otlp.JSON),
                           # the protobuf JSON parser alone would take a string for a message
                           (b'{"resourceMetrics": ["AAA"]}', otlp.JSON),
                           (b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": '
                            b'{"dataPoints": [{"attributes": ["x"]}]}}]}]}]}', otlp.JSON)]:
        with pytest.raises(otlp.DecodeError):
            otlp.decode(body, encoding)


def test_json_decoding_reads_the_otlp_json_encoding():
    body = (b'{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name",'
            b'"value":{"stringValue":"svc"}}]},"scopeMetrics":[{"metrics":[{"name":"c","sum":'
            b'{"isMonotonic":true,"aggregationTemporality":2,"dataPoints":[{"asInt":"9007199254740993",'
            b'"timeUnixNano":"' + str(now_ns()).encode() + b'","unknownField":1}]}}]}]}]}')
    tr = otlp.translate(otlp.decode(body, otlp.JSON), LIMITS, window())
    assert samples_of(tr) == {("c_total", (("job", "svc"),)): [float(9007199254740993)]}
    assert not math.isnan(tr.batch.rows[0][2])
