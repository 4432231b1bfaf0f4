"""The demo app's OpenTelemetry metrics: instruments, and the SDK's exporter to pgpulse.

The instruments follow OpenTelemetry's HTTP semantic conventions, so what pgpulse
stores (and the RED dashboard reads) is what any instrumented HTTP server sends:

* ``http.server.request.duration`` (histogram, seconds, explicit buckets), with
  ``http.request.method``, ``http.route``, ``http.response.status_code`` and, for
  failed requests, ``error.type``; in pgpulse ``http_server_request_duration_seconds``
  ``_bucket{le}``/``_sum``/``_count``;
* ``http.server.active_requests`` (up-down counter): requests in flight, a gauge in pgpulse;
* ``demo.requests`` and ``demo.errors`` (counters): requests by route, method and
  status, and failures by ``error.type``; ``demo_requests_total``, ``demo_errors_total``.

Export: OTLP/HTTP protobuf, cumulative temporality (what pgpulse, like Prometheus,
stores), every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (SDK default 60 s). The endpoint
and headers come from the arguments or the SDK's own variables
(``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``).
"""

from __future__ import annotations

import os
import socket

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

SERVICE_NAME = "pgpulse-demo"
# Seconds; OpenTelemetry's recommended boundaries for HTTP server durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CUMULATIVE = {kind: AggregationTemporality.CUMULATIVE for kind in (
    Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)}


class Instruments:
    """The app's instruments, made from one meter."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "http.server.request.duration", unit="s", description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.active = meter.create_up_down_counter(
            "http.server.active_requests", unit="{request}", description="HTTP server requests in flight.")
        self.requests = meter.create_counter(
            "demo.requests", unit="{request}", description="Requests answered, by route, method and status.")
        self.errors = meter.create_counter(
            "demo.errors", unit="{error}", description="Requests that failed, by route and error type.")


def resource() -> Resource:
    """``service.name`` pgpulse-demo (pgpulse's ``job``) and an instance id (``instance``)."""
    return Resource.create({"service.name": SERVICE_NAME,
                            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"})


def exporting_reader(endpoint: str | None, api_key: str | None, interval_ms: float | None) -> MetricReader:
    """A reader that exports to pgpulse over OTLP/HTTP with cumulative temporality.

    ``endpoint`` None: the SDK's variables, else its default. ``api_key``: sent as
    ``Authorization: Bearer``; None leaves the headers to ``OTEL_EXPORTER_OTLP_HEADERS``.
    """
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    exporter = OTLPMetricExporter(endpoint=endpoint, headers=headers, preferred_temporality=CUMULATIVE)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)


def meter_provider(reader: MetricReader) -> MeterProvider:
    return MeterProvider(resource=resource(), metric_readers=[reader])
