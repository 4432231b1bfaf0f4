"""Influx line protocol: POST /api/v2/write (InfluxDB 2.x) and POST /write (1.x).

HTTP only: the body is read here (size caps and gzip, :mod:`proxy.body`), decoded
by :mod:`pgpulse.protocols.influx` and written by the store
(:func:`pgpulse.store.samples.write_batch`), so names, limits and duplicates follow
the one rule set.

What is written, and what is answered, as InfluxDB answers its clients:

* **204** when every line was written.
* **400** for lines that will never be accepted (they do not parse, hold a string
  field, break a name or label rule, or lie outside the time window). The other
  lines of the request are written, as InfluxDB 1.x and InfluxDB 3 do ("partial
  write"); the answer lists the refused lines by number. Clients do not retry a
  400, and a retry would change nothing: a sample written again replaces itself.
* **413** for a body over PROXY_MAX_BODY_BYTES (before or after gzip) or more
  samples than PROXY_MAX_SAMPLES_PER_REQUEST: nothing is written (Telegraf splits
  the batch and sends the halves).
* **429** when new series would pass a cardinality limit, or the batch would pass
  the tenant's monthly sample quota (``proxy.quota``), **503** when the database is
  down: nothing is written, and ``Retry-After`` says when to retry.

Errors of /api/v2/write have InfluxDB 2.x's shape, ``{"code": "invalid",
"message": "..."}``; those of /write InfluxDB 1.x's, ``{"error": "..."}`` (which is
also pgpulse's own). Both carry the details of pgpulse's error as well. ``org``,
``bucket``, ``db`` and ``rp`` are accepted and not used: pgpulse has one store.
"""

from __future__ import annotations

import time

import orjson
from flask import Blueprint, Response, request

from pgpulse.protocols import influx
from pgpulse.store import samples
from pgpulse.store.batch import PG_EPOCH_US
from pgpulse.store.errors import CardinalityExceeded
from pgpulse.store.series import SeriesLimits
from proxy import metrics, quota
from proxy.api.openapi import param
from proxy.auth import request_tenant, require_scope
from proxy.body import raw_body
from proxy.errors import ApiError, bad_request, json_dumps
from proxy.ratelimit import charge_samples
from proxy.state import state

bp = Blueprint("influx", __name__)

V2_PATH = "/api/v2/write"
V1_PATH = "/write"
# A cardinality limit holds until an operator raises it or series expire: clients
# (Telegraf, influxdb-client) keep the batch and retry no sooner than this.
CARDINALITY_RETRY_AFTER_S = 60
LISTED_IN_MESSAGE = 10  # refused lines spelt out in the message (the rest in "errors")
# Content types line protocol arrives with: Influx's clients send text/plain, curl
# --data-binary sends a form type, some clients send nothing or octet-stream.
CONTENT_TYPES = frozenset({"", "text/plain", "application/octet-stream",
                           "application/x-www-form-urlencoded"})
# The "code" of an InfluxDB 2.x error, by status.
V2_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not found",
            405: "method not allowed", 408: "invalid", 409: "conflict",
            413: "request too large", 415: "unsupported media type",
            429: "too many requests", 503: "unavailable"}


def _is_v2() -> bool:
    return request.url_rule is not None and request.url_rule.rule == V2_PATH


@bp.before_request
def _no_credentials_in_url() -> None:
    # InfluxDB 1.x also takes u and p as query parameters; pgpulse keeps keys out of
    # URLs (they end up in logs), whatever the endpoint.
    if "u" in request.args or "p" in request.args:
        raise bad_request("credentials in the query string (u, p) are not accepted: send the "
                          "API key as the password of Basic auth, or 'Authorization: Token <key>'",
                          parameter="p" if "p" in request.args else "u")


@bp.after_request
def _influx_error(response: Response) -> Response:
    """Every error of these endpoints (auth, body, store, database) in Influx's shape."""
    if response.status_code < 400:
        return response
    if response.status_code == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(CARDINALITY_RETRY_AFTER_S)
    if not _is_v2() or response.mimetype != "application/json":
        return response  # 1.x's shape is {"error": ...}, pgpulse's own
    try:
        body = orjson.loads(response.get_data())
    except orjson.JSONDecodeError:
        return response
    if isinstance(body, dict) and "error" in body and "code" not in body:
        message = body.pop("error")
        code = V2_CODES.get(response.status_code,
                            "internal error" if response.status_code >= 500 else "invalid")
        response.set_data(json_dumps({"code": code, "message": message, **body}))
    return response


def _precision(allowed: tuple[str, ...]) -> str:
    precision = request.args.get("precision", influx.DEFAULT_PRECISION)
    if precision not in allowed:
        raise bad_request(f"invalid precision {precision[:20]!r}; valid precisions are "
                          f"{', '.join(allowed)}", parameter="precision", allowed=list(allowed))
    return precision


def _content_type() -> None:
    mimetype = request.mimetype
    if mimetype not in CONTENT_TYPES:
        raise ApiError(415, f"Content-Type {mimetype[:60]!r} is not line protocol: send text/plain "
                            "(JSON samples go to POST /api/ingest)",
                       supported=sorted(t for t in CONTENT_TYPES if t))


def _refusal(decoded: influx.Decoded) -> ApiError:
    """The 400 of a request with refused lines (the others were written)."""
    listed = "; ".join(f"line {e.line}: {e.message}" for e in decoded.errors[:LISTED_IN_MESSAGE])
    more = decoded.refused - min(decoded.refused, LISTED_IN_MESSAGE)
    if more:
        listed += f"; and {more} more"
    written = decoded.accepted
    # "partial write" even when no line was written, as InfluxDB says it: Telegraf's
    # 1.x output drops (does not retry) a 400 that says so.
    head = f"partial write: {decoded.refused} of {decoded.points} lines refused, {written} written"
    return ApiError(400, f"{head}: {listed}", line=decoded.errors[0].line,
                   errors=[{"line": e.line, "message": e.message} for e in decoded.errors],
                   refused=decoded.refused, written=written)


def _write(precisions: tuple[str, ...]) -> Response:
    st = state()
    settings = st.settings
    precision = _precision(precisions)
    _content_type()
    body = raw_body(settings.max_body_bytes)
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    series_limits = SeriesLimits.from_settings(st.core)
    rules = influx.Rules(series_limits, now_us - settings.max_past_s * 1_000_000,
                         now_us + settings.max_future_s * 1_000_000, settings.max_samples)
    try:
        decoded = influx.decode(body, precision, now_us, rules)
    except influx.TooManySamples as exc:
        metrics.SAMPLES_REJECTED.labels("too_many_samples").inc(exc.limit)
        raise ApiError(413, f"{exc}; the limit is {exc.limit} (PROXY_MAX_SAMPLES_PER_REQUEST): "
                            "send smaller batches", limit=exc.limit) from None
    if decoded.points == 0:
        raise bad_request("writing requires points: the body holds no line protocol")
    batch = decoded.batch
    charge_samples(len(batch.rows))
    if batch.rows:
        cache = st.series_cache
        try:
            with st.connection() as conn:
                written, learned = samples.write_batch(conn, batch, series_limits, cache,
                                                       tenant=request_tenant())
                quota.charge(conn, written)
        except CardinalityExceeded:
            metrics.SAMPLES_REJECTED.labels("cardinality").inc(len(batch.rows))
            raise
        cache.update(learned)
        metrics.SAMPLES_INGESTED.inc(written)
    if decoded.refused:
        metrics.SAMPLES_REJECTED.labels("invalid_line").inc(decoded.refused)
        raise _refusal(decoded)
    return Response(status=204)


@bp.post(V2_PATH)
@require_scope("ingest")
def write_v2() -> Response:
    return _write(influx.V2_PRECISIONS)


@bp.post(V1_PATH)
@require_scope("ingest")
def write_v1() -> Response:
    return _write(influx.V1_PRECISIONS)


# -- OpenAPI -------------------------------------------------------------------------

_LINE_ERRORS = {"type": "array", "items": {"type": "object", "properties": {
    "line": {"type": "integer"}, "message": {"type": "string"}}}}
_DETAILS = {"line": {"type": "integer", "description": "First refused line (1-based)"},
            "errors": {**_LINE_ERRORS, "description": "Refused lines, at most 100"},
            "refused": {"type": "integer"}, "written": {"type": "integer"}}
V2_ERROR = {"type": "object", "required": ["code", "message"], "additionalProperties": True,
            "properties": {"code": {"type": "string", "description": "InfluxDB 2.x error code"},
                           "message": {"type": "string"}, **_DETAILS},
            "description": "InfluxDB 2.x's error shape, with pgpulse's details"}
V1_ERROR = {"type": "object", "required": ["error"], "additionalProperties": True,
            "properties": {"error": {"type": "string"}, **_DETAILS},
            "description": "InfluxDB 1.x's error shape (pgpulse's own), with details"}


def _responses(schema: dict) -> dict:
    def error(description: str, headers: dict | None = None) -> dict:
        out = {"description": description, "content": {"application/json": {"schema": schema}}}
        if headers:
            out["headers"] = headers
        return out

    retry = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
    return {
        "204": {"description": "Every line written"},
        "400": error("Lines refused (numbered in the message and in 'errors'); the other lines "
                     "were written. Or a bad parameter, gzip stream or key in the URL"),
        "401": error("Missing, unknown or revoked API key"),
        "403": error("The API key lacks the ingest scope"),
        # The serving layer answers a head that never came before Flask sees the
        # request, in pgpulse's shape.
        "408": {"description": "The request did not arrive in time", "content": {
            "application/json": {"schema": {"anyOf": [schema, {"$ref": "#/components/schemas/Error"}]}}}},
        "413": error("Body too large (also after gzip), or too many samples: nothing written"),
        "415": error("Content-Type or Content-Encoding not supported"),
        "429": error("New series would pass a cardinality limit, or the batch would pass "
                     "the monthly sample quota: nothing written", retry),
        "503": error("Database unavailable: nothing written", retry),
    }


_BODY = {"required": True, "description": "InfluxDB line protocol, one point per line",
         "content": {"text/plain": {"schema": {"type": "string"}}}}
_ENCODING = param("Content-Encoding", "gzip or absent", where="header",
                  schema={"type": "string", "enum": ["gzip", "identity"]})
_UNUSED = "Accepted and not used: pgpulse has one store"

OPENAPI = {
    V2_PATH: {"post": {
        "tags": ["ingest"], "operationId": "influxWriteV2", "x-scope": "ingest",
        "summary": "Write InfluxDB line protocol (InfluxDB 2.x API; Telegraf outputs.influxdb_v2, "
                   "influxdb-client; scope ingest)",
        "description": "Metric name: <measurement>_<field>; tags become labels; integer, "
                       "unsigned, float and boolean fields are values. Lines that cannot be "
                       "stored (parse errors, string fields, bad names, times outside the window) "
                       "are refused by number and the others written. Authorization: Token <key>.",
        "parameters": [
            param("precision", "Unit of the lines' timestamps",
                  schema={"type": "string", "enum": list(influx.V2_PRECISIONS), "default": "ns"}),
            param("org", _UNUSED), param("orgID", _UNUSED), param("bucket", _UNUSED),
            _ENCODING,
        ],
        "requestBody": _BODY,
        "responses": _responses(V2_ERROR),
    }},
    V1_PATH: {"post": {
        "tags": ["ingest"], "operationId": "influxWriteV1", "x-scope": "ingest",
        "summary": "Write InfluxDB line protocol (InfluxDB 1.x API; Telegraf outputs.influxdb; "
                   "scope ingest)",
        "description": "As /api/v2/write, with 1.x's precisions and error shape. The key goes as "
                       "the password of Basic auth (or a Token/Bearer header), never as u/p "
                       "query parameters.",
        "parameters": [
            param("precision", "Unit of the lines' timestamps",
                  schema={"type": "string", "enum": list(influx.V1_PRECISIONS), "default": "ns"}),
            param("db", _UNUSED), param("rp", _UNUSED), param("consistency", _UNUSED),
            _ENCODING,
        ],
        "requestBody": _BODY,
        "responses": _responses(V1_ERROR),
    }},
}
