"""Ingest payloads for benchmarks: the same samples in each protocol pgpulse takes.

A :class:`SeriesSet` holds ``n`` series (half counters, half gauges) whose values move
on as batches are taken; a builder turns a batch into the body and headers of one
request of its protocol, with the maintained library of that protocol:

* ``json``: pgpulse's own ``POST /api/ingest``;
* ``otlp``: OTLP/HTTP ``POST /v1/metrics``, an ``ExportMetricsServiceRequest`` of the
  ``opentelemetry-proto`` classes (protobuf, or OTLP's JSON encoding), counters as
  monotonic cumulative sums;
* ``influx``: line protocol ``POST /api/v2/write`` made with ``influxdb-client``'s
  ``Point`` (measurement ``loadgen``, field ``counter_total`` or ``gauge``);
* ``remote_write``: Prometheus remote write 1.0 ``POST /api/v1/write``, a
  ``WriteRequest`` of pgpulse's generated protobuf classes (:mod:`pgpulse.protocols.prompb`),
  snappy-compressed with ``cramjam``, one time series per series of the batch and the
  counter's ``TYPE`` in its metadata.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
from collections.abc import Callable

import orjson

PROTOCOLS = ("json", "otlp", "influx", "remote_write")
DEFAULT_PATHS = {"json": "/api/ingest", "otlp": "/v1/metrics", "influx": "/api/v2/write",
                 "remote_write": "/api/v1/write"}
# What remote write 1.0 asks of every request besides its body's Content-Type.
REMOTE_WRITE_HEADERS = {"Content-Encoding": "snappy", "X-Prometheus-Remote-Write-Version": "0.1.0"}

COUNTER = "loadgen_counter_total"
GAUGE = "loadgen_gauge"
SERVICE = "pgpulse-loadgen"


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str  # the pgpulse / Prometheus name it lands as
    labels: dict[str, str]
    value: float
    time_ns: int
    counter: bool


class SeriesSet:
    """``n`` series, taken ``size`` at a time round-robin; each take advances the
    counters (by 1 to 10) and moves the gauges along a sine."""

    def __init__(self, n: int, *, instance: str = "loadgen-1") -> None:
        if n < 1:
            raise ValueError("series must be >= 1")
        self.n = n
        self.instance = instance
        self._next = 0
        self._counters = [0.0] * n
        self._steps = [0] * n

    def take(self, size: int, time_ns: int) -> list[Sample]:
        if size < 1:
            raise ValueError("batch size must be >= 1")
        out = []
        for j in range(size):
            k = self._next
            self._next = (self._next + 1) % self.n
            self._steps[k] += 1
            # One series twice in one batch (size > n) gets a later time, never a second
            # value at the same time: a millisecond later, the finest time every protocol
            # keeps (remote write's).
            t = time_ns + (j // self.n) * 1_000_000
            labels = {"series": str(k), "instance": self.instance}
            if k % 2 == 0:
                self._counters[k] += 1 + (self._steps[k] * 7 + k) % 10
                out.append(Sample(COUNTER, labels, self._counters[k], t, True))
            else:
                value = round(50 + 40 * math.sin(self._steps[k] / 10 + k), 3)
                out.append(Sample(GAUGE, labels, value, t, False))
        return out


@dataclasses.dataclass(frozen=True)
class Payload:
    body: bytes
    headers: dict[str, str]
    samples: int


def build_json(samples: list[Sample]) -> tuple[bytes, str]:
    metrics = [{"name": s.name, "labels": s.labels, "value": s.value, "timestamp": s.time_ns / 1e9,
                "type": "counter" if s.counter else "gauge"} for s in samples]
    return orjson.dumps({"metrics": metrics}), "application/json"


def otlp_request(samples: list[Sample], *, start_ns: int):
    """The samples as an ``ExportMetricsServiceRequest``: the counter as one monotonic
    cumulative Sum (``loadgen.counter``), the gauge as one Gauge (``loadgen.gauge``),
    one data point per sample, under a resource of ``service.name`` pgpulse-loadgen."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def attrs(labels: dict[str, str]) -> list:
        return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels.items() if k != "instance"]

    counter = m.Metric(name="loadgen.counter", description="Counter of the load generator")
    counter.sum.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    counter.sum.is_monotonic = True
    gauge = m.Metric(name="loadgen.gauge", description="Gauge of the load generator")
    for s in samples:
        point = m.NumberDataPoint(attributes=attrs(s.labels), time_unix_nano=s.time_ns, as_double=s.value)
        if s.counter:
            point.start_time_unix_nano = start_ns
            counter.sum.data_points.append(point)
        else:
            gauge.gauge.data_points.append(point)
    instance = samples[0].labels.get("instance", "") if samples else ""
    resource = Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value=SERVICE)),
        KeyValue(key="service.instance.id", value=AnyValue(string_value=instance)),
    ])
    scope = m.ScopeMetrics(scope=InstrumentationScope(name="pgpulse.loadgen"),
                           metrics=[x for x in (counter, gauge)
                                    if x.sum.data_points or x.gauge.data_points])
    return ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(resource=resource,
                                                                            scope_metrics=[scope])])


def build_otlp(samples: list[Sample], *, start_ns: int) -> tuple[bytes, str]:
    return otlp_request(samples, start_ns=start_ns).SerializeToString(), "application/x-protobuf"


def build_otlp_json(samples: list[Sample], *, start_ns: int) -> tuple[bytes, str]:
    from google.protobuf import json_format

    # OTLP's JSON encoding: lowerCamelCase names, enums as integers, 64-bit integers as strings.
    doc = json_format.MessageToDict(otlp_request(samples, start_ns=start_ns), use_integers_for_enums=True)
    return orjson.dumps(doc), "application/json"


def build_influx(samples: list[Sample]) -> tuple[bytes, str]:
    from influxdb_client import Point, WritePrecision

    lines = []
    for s in samples:
        point = Point("loadgen")
        for k, v in s.labels.items():
            point = point.tag(k, v)
        # measurement_field is the series name: loadgen_counter_total, loadgen_gauge.
        field = "counter_total" if s.counter else "gauge"
        lines.append(point.field(field, s.value).time(s.time_ns, WritePrecision.NS).to_line_protocol())
    return "\n".join(lines).encode(), "text/plain; charset=utf-8"


def build_remote_write(samples: list[Sample]) -> tuple[bytes, str]:
    import cramjam

    from pgpulse.protocols.prompb import MetricMetadata, WriteRequest

    by_series: dict[tuple, list[Sample]] = {}
    for s in samples:
        by_series.setdefault((s.name, *sorted(s.labels.items())), []).append(s)
    req = WriteRequest()
    for (name, *labels), points in by_series.items():
        ts = req.timeseries.add()
        # Labels sorted by name, __name__ first, as Prometheus sends them.
        ts.labels.add(name="__name__", value=name)
        for k, v in labels:
            ts.labels.add(name=k, value=v)
        for s in sorted(points, key=lambda s: s.time_ns):
            ts.samples.add(value=s.value, timestamp=s.time_ns // 1_000_000)
    req.metadata.add(metric_family_name=COUNTER, type=MetricMetadata.COUNTER, help="Counter of the load generator")
    req.metadata.add(metric_family_name=GAUGE, type=MetricMetadata.GAUGE, help="Gauge of the load generator")
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString())), "application/x-protobuf"


def builder(protocol: str, *, encoding: str = "protobuf", start_ns: int = 0
            ) -> Callable[[list[Sample]], tuple[bytes, str]]:
    """The body builder of ``protocol`` (``encoding`` chooses OTLP's protobuf or JSON).
    The protocol's library is imported here, not in the first request's time."""
    if protocol == "json":
        return build_json
    if protocol == "otlp":
        import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2  # noqa: F401

        if encoding == "json":
            return lambda samples: build_otlp_json(samples, start_ns=start_ns)
        return lambda samples: build_otlp(samples, start_ns=start_ns)
    if protocol == "influx":
        import influxdb_client  # noqa: F401

        return build_influx
    if protocol == "remote_write":
        return build_remote_write
    raise ValueError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")


def auth_headers(protocol: str, key: str | None) -> dict[str, str]:
    """The headers each protocol's clients send: the key (Influx clients: ``Token``)
    and, for remote write, the protocol's own headers."""
    headers = dict(REMOTE_WRITE_HEADERS) if protocol == "remote_write" else {}
    if key:
        headers["Authorization"] = f"{'Token' if protocol == 'influx' else 'Bearer'} {key}"
    return headers


def payload(samples: list[Sample], build: Callable[[list[Sample]], tuple[bytes, str]], *,
            headers: dict[str, str], compress: bool = False) -> Payload:
    body, content_type = build(samples)
    h = {**headers, "Content-Type": content_type}
    if compress and "Content-Encoding" not in h:  # remote write is snappy-compressed already
        body = gzip.compress(body, compresslevel=1)
        h["Content-Encoding"] = "gzip"
    return Payload(body, h, len(samples))
