"""Operations: /health (process alive), /ready (database and schema), /metrics."""

from __future__ import annotations

import functools
import logging

import psycopg
from flask import Blueprint, Response
from psycopg_pool import PoolTimeout

from pgpulse import schema
from pgpulse.store import series_reads
from proxy import metrics
from proxy.errors import error_response, json_response
from proxy.state import state

log = logging.getLogger("proxy.ops")
bp = Blueprint("ops", __name__)


@functools.cache
def _head() -> str:
    return schema.head_revision()


@bp.get("/health")
def health() -> Response:
    return json_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    try:
        with state().connection() as conn:
            current = schema.current_revision(conn)
    except (psycopg.OperationalError, PoolTimeout) as exc:
        log.warning("not ready: database unreachable (%s)", type(exc).__name__)
        return error_response(503, "database unreachable", reason=type(exc).__name__)
    head = _head()
    if current != head:
        return error_response(503, "database schema not current: run `pgpulse migrate`",
                              revision=current, head=head)
    return json_response({"status": "ready", "revision": current})


@bp.get("/metrics")
def metrics_view() -> Response:
    # The series count is read at scrape time; a database outage leaves it as it was.
    try:
        with state().connection() as conn:
            metrics.SERIES.set(series_reads.count_series(conn, None))
    except (psycopg.Error, PoolTimeout) as exc:
        # Down or not migrated yet: /metrics still answers, with the last count.
        log.warning("series count not refreshed: %s", type(exc).__name__)
    body, content_type = metrics.exposition(state().settings.metrics_dir)
    return Response(body, content_type=content_type)


OPENAPI = {
    "/health": {"get": {
        "tags": ["operations"], "summary": "The process is alive", "security": [],
        "responses": {"200": {"description": "Alive", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}}},
    }},
    "/ready": {"get": {
        "tags": ["operations"], "summary": "The database is reachable and migrations are current",
        "security": [],
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"const": "ready"},
                                                 "revision": {"type": "string"}}}}}},
            "503": {"$ref": "#/components/responses/Unavailable"},
        },
    }},
    "/metrics": {"get": {
        "tags": ["operations"], "summary": "The proxy's own metrics (Prometheus text format)",
        "security": [],
        "responses": {"200": {"description": "Prometheus exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
}
