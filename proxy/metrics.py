"""The proxy's own metrics, exposed at /metrics in the Prometheus text format.

Metrics are process-wide (prometheus_client's default registry). Under gunicorn
every worker is its own process: without multiprocess mode a scrape sees only the
worker that answered it. With PROMETHEUS_MULTIPROC_DIR set (``pgpulse proxy`` sets
one up when it runs several workers), values go to files in that directory and
/metrics adds up all workers.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

access_log = logging.getLogger("proxy.access")
SLOW_SECONDS = 1.0

REQUESTS = Counter(
    "pgpulse_proxy_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "pgpulse_proxy_request_duration_seconds",
    "Time to produce a response (for streamed exports: until streaming starts)",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SAMPLES_INGESTED = Counter("pgpulse_proxy_samples_ingested_total", "Samples written to the samples table")
SAMPLES_REJECTED = Counter(
    "pgpulse_proxy_samples_rejected_total",
    "Samples refused by ingest (each sample of a refused batch counts), by reason",
    ["reason"],
)
SNAPSHOTS_INGESTED = Counter(
    "pgpulse_proxy_snapshots_ingested_total", "Host snapshots written (duplicates not counted)"
)
RATE_LIMITED = Counter(
    "pgpulse_proxy_rate_limited_total", "Requests refused by a rate limit, by kind of limit",
    ["kind"],
)
RATELIMIT_STORAGE_ERRORS = Counter(
    "pgpulse_proxy_ratelimit_storage_errors_total",
    "Rate-limit counts that fell back to process memory because Redis did not answer",
)
SERIES = Gauge(
    "pgpulse_proxy_series", "Series in the catalogue (read at scrape time)", multiprocess_mode="max"
)


# Label values a client chooses must come from a closed set, or every invented
# method or path would be a new series and /metrics would grow without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def method_label(method: str) -> str:
    """The request method as a label value: a known method, or ``other``."""
    return method if method in KNOWN_METHODS else OTHER


def route_label() -> str:
    """The matched route's rule (a closed set, made by the app), or ``other``."""
    return request.url_rule.rule if request.url_rule is not None else OTHER


def instrument(app: Flask) -> None:
    """Count and time every request of ``app``."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("request_started")
        route = route_label()
        method = method_label(request.method)
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        elapsed = time.perf_counter() - started if started is not None else 0.0
        LATENCY.labels(method, route).observe(elapsed)
        # One structured line per request: errors and slow ones at info, the rest at
        # debug (a busy ingest would otherwise log every batch).
        level = logging.INFO if response.status_code >= 400 or elapsed > SLOW_SECONDS else logging.DEBUG
        if access_log.isEnabledFor(level):
            access_log.log(level, "%s %s %d", request.method, request.path, response.status_code,
                           extra={"method": request.method, "route": route,
                                  "status": response.status_code,
                                  "duration_ms": round(elapsed * 1000, 2),
                                  "api_key_id": g.get("api_key_id")})
        return response


def exposition(multiprocess_dir: str | None) -> tuple[bytes, str]:
    """The text of /metrics and its content type."""
    if multiprocess_dir:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
