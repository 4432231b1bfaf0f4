"""The demo app (demo/): its OpenTelemetry instruments record what the RED dashboard
reads, and its exporter sends OTLP/HTTP with the key and cumulative temporality.

Instruments are read with the SDK's InMemoryMetricReader. The exporter is the real
OTLP/HTTP exporter of the SDK, posting to a local HTTP receiver in this test that
decodes the request with the opentelemetry-proto classes (pgpulse's own receiver is
tested end to end in tests/test_demo_e2e.py).
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from demo import telemetry
from demo.app import Behaviour, create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo():
    reader = InMemoryMetricReader(preferred_temporality=telemetry.CUMULATIVE)
    provider = telemetry.meter_provider(reader)
    app = create_app(telemetry.Instruments(provider.get_meter("test")),
                     Behaviour(error_rate=0.5, latency_scale=0, seed=1))
    yield app.test_client(), reader
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list]:
    data = reader.get_metrics_data()
    out: dict[str, list] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_every_request_is_counted_timed_and_labelled(demo):
    client, reader = demo
    assert client.get("/api/items").status_code == 200
    assert client.get("/api/items/7").status_code == 200
    assert client.get("/api/items/5000").status_code == 404
    assert client.get("/api/search").status_code == 400
    assert client.post("/api/orders", json={"item_id": 3, "quantity": "x"}).status_code == 400
    statuses = [client.post("/api/orders", json={"item_id": 3, "quantity": 1}).status_code for _ in range(40)]
    assert {201, 500, 503} <= set(statuses)
    assert client.get("/nowhere").status_code == 404

    got = points(reader)
    assert set(got) == {"http.server.request.duration", "http.server.active_requests", "demo.requests",
                        "demo.errors"}
    requests = {tuple(sorted(p.attributes.items())): p.value for p in got["demo.requests"]}
    assert requests[(("http.request.method", "GET"), ("http.response.status_code", 200),
                     ("http.route", "/api/items/<int:item_id>"))] == 1
    assert requests[(("http.request.method", "GET"), ("http.response.status_code", 404),
                     ("http.route", "/api/items/<int:item_id>"))] == 1
    # An unknown path has no route, as the semantic conventions say.
    assert requests[(("http.request.method", "GET"), ("http.response.status_code", 404))] == 1
    orders = {p.attributes["http.response.status_code"]: p.value for p in got["demo.requests"]
              if p.attributes.get("http.route") == "/api/orders"}
    assert sum(orders.values()) == 41 and orders[400] == 1

    errors = {p.attributes["error.type"]: p.value for p in got["demo.errors"]}
    assert errors == {"PaymentTimeout": statuses.count(500), "OutOfStock": statuses.count(503)}

    durations = got["http.server.request.duration"]
    assert all(isinstance(p, HistogramDataPoint) for p in durations)
    assert all(tuple(p.explicit_bounds) == telemetry.DURATION_BUCKETS for p in durations)
    assert sum(p.count for p in durations) == 6 + 40
    failed = [p for p in durations if "error.type" in p.attributes]
    assert {p.attributes["error.type"] for p in failed} == {"PaymentTimeout", "OutOfStock"}
    assert all(p.attributes["http.response.status_code"] >= 500 for p in failed)

    # Every request that started has finished: nothing left in flight.
    assert got["http.server.active_requests"] and all(p.value == 0 for p in got["http.server.active_requests"])


def test_requests_in_flight_are_counted_while_they_run():
    reader = InMemoryMetricReader()
    provider = telemetry.meter_provider(reader)
    app = create_app(telemetry.Instruments(provider.get_meter("test")), Behaviour(latency_scale=0))
    entered, release = threading.Event(), threading.Event()

    @app.get("/hold")
    def hold():
        entered.set()
        release.wait(30)
        return "ok"

    client = app.test_client()
    thread = threading.Thread(target=lambda: client.get("/hold"))
    thread.start()
    assert entered.wait(30)
    in_flight = {p.attributes.get("http.route"): p.value for p in points(reader)["http.server.active_requests"]}
    release.set()
    thread.join(30)
    assert in_flight == {"/hold": 1}
    assert {p.value for p in points(reader)["http.server.active_requests"]} == {0}
    provider.shutdown()


def test_counters_are_cumulative_in_the_export_and_the_slow_endpoint_is_slow():
    reader = InMemoryMetricReader(preferred_temporality=telemetry.CUMULATIVE)
    provider = telemetry.meter_provider(reader)
    app = create_app(telemetry.Instruments(provider.get_meter("test")),
                     Behaviour(error_rate=0, latency_scale=0.05, seed=3))
    client = app.test_client()
    for _ in range(3):
        client.get("/api/report")
        client.get("/api/items")
    data = reader.get_metrics_data()
    metrics = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics["demo.requests"].data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert metrics["demo.requests"].data.is_monotonic
    assert not metrics["http.server.active_requests"].data.is_monotonic
    by_route = {p.attributes["http.route"]: p for p in metrics["http.server.request.duration"].data.data_points}
    # The report's median delay is 66 times the items' (0.8 s vs 0.012 s, both scaled).
    assert by_route["/api/report"].sum > 5 * by_route["/api/items"].sum
    resource = data.resource_metrics[0].resource.attributes
    assert resource["service.name"] == "pgpulse-demo" and resource["service.instance.id"]
    provider.shutdown()


def test_the_exporter_posts_otlp_protobuf_with_the_key_and_cumulative_temporality():
    received: list[tuple[dict, bytes]] = []

    @Request.application
    def receiver(request: Request) -> Response:
        received.append((dict(request.headers), request.get_data()))
        return Response(b"", status=200, content_type="application/x-protobuf")

    server = make_server("127.0.0.1", 0, receiver, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reader = telemetry.exporting_reader(f"http://127.0.0.1:{server.server_port}/v1/metrics", "pgpk_demo",
                                            interval_ms=3_600_000)
        provider = telemetry.meter_provider(reader)
        app = create_app(telemetry.Instruments(provider.get_meter("pgpulse.demo")), Behaviour(latency_scale=0))
        app.test_client().get("/api/items")
        provider.shutdown()  # exports what was recorded
    finally:
        server.shutdown()
        server.server_close()
    assert received, "nothing was exported"
    headers, body = received[0]
    assert headers["Authorization"] == "Bearer pgpk_demo"
    assert headers["Content-Type"] == "application/x-protobuf"
    request = ExportMetricsServiceRequest.FromString(body)
    metrics = {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics["demo.requests"].sum.aggregation_temporality == 2  # CUMULATIVE
    assert metrics["http.server.request.duration"].histogram.aggregation_temporality == 2
    assert list(metrics["http.server.request.duration"].histogram.data_points[0].explicit_bounds) == \
        list(telemetry.DURATION_BUCKETS)


def test_the_demo_imports_nothing_of_pgpulse():
    parts = {"pgpulse", "collector", "etl", "proxy"}
    found = set()
    for path in (ROOT / "demo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    assert "flask" in found and "opentelemetry" in found  # the scan sees imports
    assert not found & parts
