"""OpenTelemetry OTLP/HTTP metrics: POST /v1/metrics.

HTTP only, as the OTLP specification sets it: the body is binary protobuf
(``Content-Type: application/x-protobuf``) or OTLP JSON (``application/json``),
gzip when ``Content-Encoding: gzip`` says so (bounded decompression,
:mod:`proxy.body`); anything else is a 415. The request is mapped to a batch by
:mod:`pgpulse.protocols.otlp` and written by the store in one transaction.

Answers are OTLP's own, in the encoding of the request:

* 200 with an ``ExportMetricsServiceResponse``; when data points were refused (a
  delta sum, an exponential histogram, a value that is not finite, a series the
  store refuses for its type or its metric's series limit) the rest is written and
  ``partial_success`` says how many points were refused and why (clients do not
  retry it);
* 400 when nothing of the request can ever be stored (it does not decode, or every
  data point was refused), 401/403 for the key, 413 for a body or batch too large,
  415 for a content type other than the two: never retried by an exporter;
* 429 (the overall series limit) and 503 (the database) with ``Retry-After``:
  retried;
* every error body is a ``google.rpc.Status`` (``code``, ``message``, and for a 400 a
  ``google.rpc.BadRequest`` detail), not pgpulse's JSON error shape.
"""

from __future__ import annotations

import logging
import time

import psycopg
from flask import Blueprint, Response, request
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from pgpulse.protocols import otlp
from pgpulse.store import samples
from pgpulse.store.batch import PG_EPOCH_US, Window
from pgpulse.store.errors import CardinalityExceeded, StoreError, TypeConflict
from pgpulse.store.series import SeriesLimits
from proxy import metrics, quota
from proxy.api.ingest import gc_paused
from proxy.auth import request_tenant, require_scope
from proxy.body import raw_body
from proxy.errors import ApiError, DatabaseUnavailable, store_headers, store_status
from proxy.ratelimit import charge_samples
from proxy.state import ProxyState, state

log = logging.getLogger("proxy.otlp")
bp = Blueprint("otlp", __name__)

# A metric the store refuses (its type, its metric's series limit) leaves the batch
# and the rest is tried again; past this many such metrics the request is refused.
MAX_DROPPED_METRICS = 20
# The overall series limit lifts when an operator raises it or series go: a minute
# between an exporter's retries.
LIMIT_RETRY_AFTER_S = 60

_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED, 404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED,
    408: code_pb2.DEADLINE_EXCEEDED, 409: code_pb2.ABORTED, 413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT, 429: code_pb2.RESOURCE_EXHAUSTED,
    500: code_pb2.INTERNAL, 503: code_pb2.UNAVAILABLE,
}


def _encoding() -> str:
    """The request's encoding by its Content-Type (JSON when it is neither, for the
    answer a person reads)."""
    return otlp.PROTOBUF if request.mimetype == otlp.PROTOBUF else otlp.JSON


def status_response(http: int, message: str, headers: dict[str, str] | None = None,
                    field: str | None = None) -> Response:
    """An OTLP failure: a google.rpc.Status in the request's encoding."""
    status = status_pb2.Status(code=_GRPC_CODES.get(http, code_pb2.UNKNOWN), message=message)
    if http == 400:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field or "body", description=message)]))
        status.details.append(detail)
    encoding = _encoding()
    if encoding == otlp.PROTOBUF:
        body = status.SerializeToString()
    else:
        body = json_format.MessageToJson(status, indent=None).encode()
    return Response(body, status=http, content_type=encoding, headers=headers)


# -- errors in OTLP's envelope --------------------------------------------------------


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    field = exc.details.get("field") or exc.details.get("parameter")
    return status_response(exc.status, exc.message, exc.headers, field=field)


@bp.errorhandler(StoreError)
def _store_error(exc: StoreError) -> Response:
    http = store_status(exc)
    headers = store_headers(exc) or ({"Retry-After": str(LIMIT_RETRY_AFTER_S)} if http == 429 else None)
    return status_response(http, exc.message, headers, field=exc.details.get("field"))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    return status_response(status, (exc.description or exc.name or "error").strip())


@bp.errorhandler(PoolTimeout)
def _pool_timeout(exc: PoolTimeout) -> Response:
    log.warning("no database connection available: %s", exc)
    down = DatabaseUnavailable("no connection available in time")
    return status_response(503, "database unavailable: no connection available in time", down.headers)


@bp.errorhandler(psycopg.OperationalError)
def _db_down(exc: psycopg.OperationalError) -> Response:
    log.warning("database error: %s", type(exc).__name__)
    down = DatabaseUnavailable(type(exc).__name__)
    return status_response(503, f"database unavailable: {type(exc).__name__}", down.headers)


@bp.errorhandler(psycopg.DataError)
def _data_error(exc: psycopg.Error) -> Response:
    return status_response(400, f"invalid input: {type(exc).__name__}")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return status_response(500, "internal error")


# -- the endpoint ---------------------------------------------------------------------


def _window(st: ProxyState) -> Window:
    s = st.settings
    return Window.around(time.time_ns() // 1000 - PG_EPOCH_US, s.max_past_s, s.max_future_s)


def _write(st: ProxyState, tr: otlp.Translation, limits: SeriesLimits) -> int:
    """Write the batch in one transaction; a metric the store refuses for a series'
    type or its metric's series limit leaves the batch (its points rejected) and the
    rest is written. Returns the samples written."""
    cache = st.series_cache
    tenant = request_tenant()
    with st.connection() as conn:
        while True:
            try:
                with conn.transaction():
                    written, learned = samples.write_batch(conn, tr.batch, limits, cache, tenant=tenant)
                    quota.charge(conn, written)
                break
            except TypeConflict as exc:
                row = exc.details.get("index")
                culprits = {tr.metric_of_row(row)} if row is not None else set()
                _drop(tr, culprits, exc, "type_conflict")
            except CardinalityExceeded as exc:
                name = exc.details.get("metric")
                culprits = tr.metrics_of_series_name(name) if name is not None else set()
                _drop(tr, culprits, exc, "cardinality")
    cache.update(learned)
    return written


def _drop(tr: otlp.Translation, culprits: set[int], exc: StoreError, reason: str) -> None:
    """Take the metrics behind a store refusal out of the batch, or refuse the request
    (the refusal is not one metric's, or too many metrics were refused)."""
    culprits -= tr.dropped
    if not culprits or len(tr.dropped) + len(culprits) > MAX_DROPPED_METRICS:
        metrics.SAMPLES_REJECTED.labels(reason).inc(len(tr.batch.rows))
        raise exc
    before = len(tr.batch.rows)
    for metric in sorted(culprits):
        tr.drop_metric(metric, exc.message)
    metrics.SAMPLES_REJECTED.labels(reason).inc(before - len(tr.batch.rows))


@bp.post("/v1/metrics")
@require_scope("ingest")
def export_metrics() -> Response:
    st = state()
    settings = st.settings
    if request.mimetype not in otlp.ENCODINGS:
        raise ApiError(415, f"unsupported Content-Type {request.mimetype or '(none)'!r}: OTLP/HTTP "
                            f"sends {otlp.PROTOBUF} or {otlp.JSON}", field="Content-Type")
    encoding = request.mimetype
    limits = SeriesLimits.from_settings(st.core)
    with gc_paused():
        body = raw_body(settings.max_body_bytes)
        try:
            message = otlp.decode(body, encoding)
        except otlp.DecodeError as exc:
            raise ApiError(400, str(exc)) from None
        most = otlp.sample_count(message)
        if most > settings.max_samples:
            metrics.SAMPLES_REJECTED.labels("too_many_samples").inc(most)
            raise ApiError(413, f"this request makes up to {most} samples (a histogram point "
                                f"one per bucket, plus _count and _sum); the limit is "
                                f"{settings.max_samples} (PROXY_MAX_SAMPLES_PER_REQUEST): export "
                                f"smaller batches", count=most, limit=settings.max_samples)
        tr = otlp.translate(message, limits, _window(st))
    size = len(tr.batch.rows) + len(tr.batch.stale)
    if tr.rejected:
        metrics.SAMPLES_REJECTED.labels("invalid").inc(tr.rejected)
    if tr.points and tr.rejected == tr.points:
        raise ApiError(400, tr.error_message())
    charge_samples(size)
    written = _write(st, tr, limits) if size else 0
    metrics.SAMPLES_INGESTED.inc(written)
    answer = ExportMetricsServiceResponse()
    if tr.rejected or tr.problems:
        answer.partial_success.rejected_data_points = tr.rejected
        answer.partial_success.error_message = tr.error_message()
    return Response(otlp.encode(answer, encoding), status=200, content_type=encoding)


_STATUS = {
    "type": "object",
    "description": "google.rpc.Status: what was wrong (OTLP's failure body; binary protobuf "
                   "when the request was, else this JSON)",
    "properties": {
        "code": {"type": "integer", "description": "gRPC code (informational)"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
_FAILURE = {"content": {otlp.JSON: {"schema": _STATUS},
                        otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}}
_REQUEST = {
    "type": "object",
    "description": "ExportMetricsServiceRequest in OTLP's JSON encoding (the protobuf JSON "
                   "mapping: lowerCamelCase keys, 64-bit integers as strings, enums as numbers)",
    # null stands for an absent field in the protobuf JSON mapping.
    "properties": {"resourceMetrics": {"type": ["array", "null"], "items": {
        "type": "object", "properties": {
            "resource": {"type": ["object", "null"]},
            "scopeMetrics": {"type": ["array", "null"], "items": {"type": "object", "properties": {
                "scope": {"type": ["object", "null"]},
                "metrics": {"type": ["array", "null"], "items": {"type": "object"}}}}}}}}},
}
_RESPONSE = {
    "type": "object",
    "description": "ExportMetricsServiceResponse; partialSuccess is set when some data points "
                   "were refused (do not retry them)",
    "properties": {"partialSuccess": {"type": "object", "properties": {
        "rejectedDataPoints": {"type": "string", "description": "int64, as a JSON string"},
        "errorMessage": {"type": "string"}}}},
}


def _fail(description: str) -> dict:
    return {"description": description, **_FAILURE}


OPENAPI = {
    "/v1/metrics": {"post": {
        "tags": ["ingest"],
        "operationId": "otlpMetrics",
        "x-scope": "ingest",
        "summary": "OpenTelemetry OTLP/HTTP metrics export (protobuf or JSON; gzip accepted; "
                   "scope ingest)",
        "description": "Mapped as the OpenTelemetry specification's Prometheus compatibility "
                       "section says (docs/sending-data.md). Refused data points are counted in "
                       "partialSuccess; errors are google.rpc.Status in the request's encoding. "
                       "A body may be gzip-compressed (Content-Encoding: gzip).",
        "requestBody": {"required": True, "content": {
            otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            otlp.JSON: {"schema": _REQUEST}}},
        "responses": {
            "200": {"description": "Written (partialSuccess set when data points were refused)",
                    "content": {otlp.JSON: {"schema": _RESPONSE},
                                otlp.PROTOBUF: {"schema": {"type": "string", "format": "binary"}}}},
            "400": _fail("Bad data: does not decode, or every data point was refused (not retried)"),
            "401": _fail("Missing, unknown or revoked API key"),
            "403": _fail("The API key lacks the ingest scope"),
            "408": _fail("The body did not arrive in time"),
            "409": _fail("A series type the store refuses, not confined to one metric"),
            "413": _fail("Body too large (also after gzip), or more samples than "
                         "PROXY_MAX_SAMPLES_PER_REQUEST (not retried)"),
            "415": _fail("Content-Type other than application/x-protobuf or application/json, "
                         "or a Content-Encoding other than gzip"),
            "429": _fail("The series limit is reached, or the batch would pass the monthly "
                         "sample quota: nothing written (retried after Retry-After)"),
            "503": _fail("The database is unreachable (retried after Retry-After)"),
        },
    }},
}
