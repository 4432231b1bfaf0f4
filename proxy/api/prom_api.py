"""Prometheus's HTTP query API under /api/v1/: PromQL queries, series, labels, metadata.

What Prometheus's clients (Grafana's Prometheus data source, promtool, alerting
tools) call, with Prometheus's own envelopes: ``{"status": "success", "data": ...,
"warnings": [...]}`` and ``{"status": "error", "errorType": ..., "error": ...}``.
Parameters come from the query string or a form body (POST), as in Prometheus.
Evaluation is :mod:`pgpulse.promql`'s; this module parses parameters and shapes
answers, and holds no SQL. docs/api.md lists every difference from Prometheus.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import promql_parser as pp
import psycopg
from flask import Blueprint, Response, request
from psycopg_pool import PoolTimeout

from pgpulse import promql
from pgpulse.promql.selection import to_selector
from pgpulse.store import metadata, sample_reads
from pgpulse.store.series_reads import find_series, label_names, label_values
from proxy.auth import request_tenant, require_scope
from proxy.errors import ApiError, json_response
from proxy.state import state
from proxy.timeparse import parse_time

bp = Blueprint("prom_api", __name__)

VERSION = "2.42.0"  # the Prometheus release whose PromQL semantics pgpulse follows
DEFAULT_TIMEOUT_S = 120.0  # Prometheus's --query.timeout default
# Prometheus's min and max times, which clients send to mean "no bound".
_NO_BOUND = {"-292273086-05-16T16:47:06Z", "292277025-08-18T07:12:54.999999999Z"}
_DURATION = re.compile(r"(\d+(ms|[smhdwy]))+")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class PromError(Exception):
    """An error answered in Prometheus's envelope."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _envelope_error(status: int, error_type: str, message: str,
                    headers: dict[str, str] | None = None) -> Response:
    return json_response({"status": "error", "errorType": error_type, "error": message},
                         status, headers)


def _error_type(status: int) -> str:
    return {400: "bad_data", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            422: "execution", 503: "unavailable"}.get(status, "internal")


@bp.errorhandler(PromError)
def _prom_error(exc: PromError) -> Response:
    return _envelope_error(exc.status, exc.error_type, exc.message)


@bp.errorhandler(promql.PromQLError)
def _promql_error(exc: promql.PromQLError) -> Response:
    return _envelope_error(exc.status, exc.error_type, exc.message)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    # Auth and parameter errors raised by shared helpers: the same envelope.
    return _envelope_error(exc.status, _error_type(exc.status), exc.message, exc.headers)


@bp.errorhandler(psycopg.errors.InvalidRegularExpression)
def _bad_regex(exc: psycopg.Error) -> Response:
    primary = getattr(exc.diag, "message_primary", None) or "invalid regular expression"
    return _envelope_error(400, "bad_data", f"invalid regular expression in a matcher: {primary}")


@bp.errorhandler(psycopg.errors.QueryCanceled)
def _cancelled(exc: psycopg.Error) -> Response:
    return _envelope_error(503, "timeout", "query timed out in query execution")


@bp.errorhandler(psycopg.DataError)
def _data_error(exc: psycopg.Error) -> Response:
    primary = getattr(exc.diag, "message_primary", None) or type(exc).__name__
    return _envelope_error(400, "bad_data", f"invalid input: {primary}")


@bp.errorhandler(psycopg.OperationalError)
def _db_down(exc: psycopg.Error) -> Response:
    return _envelope_error(503, "unavailable", "database unavailable", {"Retry-After": "5"})


@bp.errorhandler(PoolTimeout)
def _pool_timeout(exc: PoolTimeout) -> Response:
    return _envelope_error(503, "unavailable", "database unavailable: no connection in time",
                           {"Retry-After": "5"})


def _ok(data: Any, warnings: list[str] | None = None, headers: dict[str, str] | None = None
        ) -> Response:
    body: dict[str, Any] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return json_response(body, headers=headers)


def _bad(message: str) -> PromError:
    return PromError(400, "bad_data", message)


# -- parameters ----------------------------------------------------------------------


def _param(name: str) -> str | None:
    value = request.values.get(name)
    return value if value is not None and value != "" else None


def parse_time_ms(raw: str, name: str) -> int:
    """Prometheus's time parameter: Unix seconds (up to ms) or RFC 3339, as ms."""
    text = raw.strip()
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        seconds = None
    if seconds is not None:
        if not seconds.is_finite() or not 0 <= seconds <= 7_258_118_400:
            raise _bad(f'invalid parameter "{name}": cannot parse "{raw[:100]}" to a valid timestamp')
        whole = int(seconds)
        fraction = (seconds - whole) * 1000
        return whole * 1000 + int(fraction.to_integral_value(rounding="ROUND_HALF_UP"))
    try:
        when = parse_time(text, name)
    except ApiError:
        raise _bad(f'invalid parameter "{name}": cannot parse "{raw[:100]}" to a valid timestamp'
                   ) from None
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _time_or(name: str, default: int | None) -> int | None:
    raw = _param(name)
    if raw is None or raw.strip() in _NO_BOUND:
        return default
    return parse_time_ms(raw, name)


def parse_duration_ms(raw: str, name: str) -> int:
    """Prometheus's duration parameter: seconds (a float) or 1m30s-style, as ms."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds) or abs(seconds) * 1e9 > 2**63 - 1:
            raise _bad(f'invalid parameter "{name}": cannot parse "{raw[:100]}" to a valid duration')
        return int(seconds * 1000)
    if not _DURATION.fullmatch(text):
        raise _bad(f'invalid parameter "{name}": cannot parse "{raw[:100]}" to a valid duration')
    try:
        delta = pp.parse_duration(text)
    except (ValueError, OverflowError):
        raise _bad(f'invalid parameter "{name}": cannot parse "{raw[:100]}" to a valid duration'
                   ) from None
    return int(delta.total_seconds() * 1000)


def _limits() -> promql.Limits:
    settings = state().settings
    timeout_s = DEFAULT_TIMEOUT_S
    raw = _param("timeout")
    if raw is not None:
        asked = parse_duration_ms(raw, "timeout") / 1000
        if asked <= 0:
            raise _bad('invalid parameter "timeout": must be positive')
        timeout_s = min(timeout_s, asked)
    if settings.statement_timeout_ms > 0:
        timeout_s = min(timeout_s, settings.statement_timeout_ms / 1000)
    return promql.Limits(timeout_s=timeout_s, max_series=settings.max_query_series,
                         max_points=settings.max_points)


def _query_text() -> str:
    text = request.values.get("query")
    if text is None:
        raise _bad('invalid parameter "query": no query given')
    if len(text) > 65536:
        raise _bad('invalid parameter "query": longer than 65536 characters')
    return text


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _limit() -> int | None:
    raw = _param("limit")
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(f'invalid parameter "limit": cannot parse "{raw[:100]}" to an integer') from None
    if value < 0 or value > 2**63 - 1:
        raise _bad('invalid parameter "limit": must be a non-negative integer')
    return value or None


# -- queries -------------------------------------------------------------------------


@bp.route("/api/v1/query", methods=["GET", "POST"])
@require_scope("query")
def query() -> Response:
    text = _query_text()
    at = _time_or("time", None)
    limits = _limits()
    if at is None:
        at = _now_ms()
    with state().read_connection() as conn:
        result = promql.instant_query(conn, text, at, limits, tenant=request_tenant())
    return _ok(result.data(), result.warnings)


@bp.route("/api/v1/query_range", methods=["GET", "POST"])
@require_scope("query")
def query_range() -> Response:
    text = _query_text()
    start, end, step_raw = _param("start"), _param("end"), _param("step")
    if start is None:
        raise _bad('invalid parameter "start": missing')
    if end is None:
        raise _bad('invalid parameter "end": missing')
    if step_raw is None:
        raise _bad('invalid parameter "step": missing')
    start_ms = parse_time_ms(start, "start")
    end_ms = parse_time_ms(end, "end")
    if end_ms < start_ms:
        raise _bad('invalid parameter "end": end timestamp must not be before start time')
    step_ms = parse_duration_ms(step_raw, "step")
    if step_ms <= 0:
        raise _bad('invalid parameter "step": zero or negative query resolution step widths '
                   "are not accepted. Try a positive integer")
    settings = state().settings
    if (end_ms - start_ms) // step_ms > settings.max_points_per_series:
        raise _bad(f"exceeded maximum resolution of {settings.max_points_per_series:,} points per "
                   "timeseries. Try decreasing the query resolution (?step=XX)")
    if end_ms - start_ms > settings.max_range_days * 86_400_000:
        raise _bad(f'invalid parameter "start": range longer than {settings.max_range_days} days '
                   "(PROXY_MAX_RANGE_DAYS)")
    limits = _limits()
    with state().read_connection() as conn:
        result = promql.range_query(conn, text, start_ms, end_ms, step_ms, limits,
                                    tenant=request_tenant())
    return _ok(result.data(), result.warnings)


# -- series, labels, metadata --------------------------------------------------------


def _matchers(required: bool) -> list[pp.VectorSelector]:
    raw = request.values.getlist("match[]")
    if not raw:
        if required:
            raise _bad("no match[] parameter provided")
        return []
    out = []
    for text in raw:
        try:
            node = pp.parse(text)
        except ValueError as exc:
            raise _bad(f'invalid parameter "match[]": {exc}') from None
        if not isinstance(node, pp.VectorSelector):
            raise _bad('invalid parameter "match[]": a series selector is required, '
                       f"got {text[:100]!r}")
        out.append(node)
    return out


@bp.route("/api/v1/series", methods=["GET", "POST"])
@require_scope("query")
def series() -> Response:
    selectors = _matchers(required=True)
    start, end = _time_or("start", None), _time_or("end", None)
    limit = _limit()
    cap = state().settings.max_query_series
    found: dict[int, dict[str, str]] = {}
    warnings = []
    with state().read_connection() as conn:
        for node in selectors:
            rows = find_series(conn, to_selector(node), cap, tenant=request_tenant())
            if len(rows) > cap:
                raise PromError(422, "execution", f"match[] {node} matches more than {cap} series "
                                "(PROXY_MAX_QUERY_SERIES)")
            for sid, name, labels, _type in rows:
                found[sid] = {"__name__": name, **labels}
        if start is not None or end is not None:
            keep = sample_reads.ids_with_samples(conn, list(found), start, end)
            found = {sid: labels for sid, labels in found.items() if sid in keep}
    data = sorted(found.values(), key=lambda m: sorted(m.items()))
    if limit is not None and len(data) > limit:
        data = data[:limit]
        warnings.append("results truncated due to limit")
    return _ok(data, warnings)


@bp.route("/api/v1/labels", methods=["GET", "POST"])
@require_scope("query")
def labels() -> Response:
    selectors = _matchers(required=False)
    _time_or("start", None), _time_or("end", None)  # checked; the catalogue has no time
    limit = _limit()
    names: set[str] = set()
    with state().read_connection() as conn:
        for node in selectors or [None]:
            selector = to_selector(node) if node is not None else None
            found = label_names(conn, selector, tenant=request_tenant())
            names.update(found)
            if found or selector is None and label_values(conn, "__name__", None, 1, tenant=request_tenant())[0]:
                names.add("__name__")
    data = sorted(names)
    warnings = []
    if limit is not None and len(data) > limit:
        data, warnings = data[:limit], ["results truncated due to limit"]
    return _ok(data, warnings)


@bp.route("/api/v1/label/<name>/values", methods=["GET"])
@require_scope("query")
def values(name: str) -> Response:
    if not _LABEL.fullmatch(name):
        raise _bad(f'invalid label name: "{name[:100]}"')
    selectors = _matchers(required=False)
    _time_or("start", None), _time_or("end", None)
    limit = _limit()
    cap = state().settings.max_query_series
    found: set[str] = set()
    truncated = False
    with state().read_connection() as conn:
        for node in selectors or [None]:
            selector = to_selector(node) if node is not None else None
            vals, more = label_values(conn, name, selector, cap, tenant=request_tenant())
            found.update(vals)
            truncated = truncated or more
    data = sorted(found)
    warnings = ["results truncated at PROXY_MAX_QUERY_SERIES values"] if truncated else []
    if limit is not None and len(data) > limit:
        data = data[:limit]
        warnings.append("results truncated due to limit")
    return _ok(data, warnings)


@bp.route("/api/v1/metadata", methods=["GET"])
@require_scope("query")
def metric_metadata() -> Response:
    limit = _limit()
    metric = _param("metric")
    with state().read_connection() as conn:
        rows = metadata.read(conn, metric, limit, tenant=request_tenant())
    data = {name: [{"type": typ, "help": help_, "unit": unit}] for name, typ, help_, unit in rows}
    return _ok(data)


@bp.route("/api/v1/status/buildinfo", methods=["GET"])
@require_scope("query")
def buildinfo() -> Response:
    return _ok({"version": VERSION, "revision": "pgpulse", "branch": "", "buildUser": "",
                "buildDate": "", "goVersion": ""})


# -- OpenAPI -------------------------------------------------------------------------

_PROM_OK = {"type": "object", "required": ["status", "data"], "properties": {
    "status": {"type": "string", "enum": ["success"]},
    "data": {},
    "warnings": {"type": "array", "items": {"type": "string"}},
}}
_PROM_ERROR = {"type": "object", "required": ["status", "errorType", "error"], "properties": {
    "status": {"type": "string", "enum": ["error"]},
    "errorType": {"type": "string"},
    "error": {"type": "string"},
}}


def _responses(description: str) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _PROM_ERROR}}}
    return {
        "200": {"description": description, "content": {"application/json": {"schema": _PROM_OK}}},
        "400": {"description": "Bad query or parameter (errorType bad_data)", **error},
        "401": {"description": "Missing, unknown or revoked API key", **error},
        "403": {"description": "The API key lacks the query scope", **error},
        "422": {"description": "The query cannot be evaluated (errorType execution)", **error},
        "503": {"description": "Timeout, or the database is unreachable", **error},
    }


def _p(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string"}}


_TIME_DOC = "RFC 3339 or Unix seconds"
_QUERY_PARAMS = [_p("query", "PromQL expression", True),
                 _p("time", f"Evaluation time, {_TIME_DOC} (default: now)"),
                 _p("timeout", "Evaluation timeout: seconds or a duration (at most 2m)"),
                 _p("stats", "Accepted and ignored")]
_RANGE_PARAMS = [_p("query", "PromQL expression", True),
                 _p("start", f"Start, {_TIME_DOC}", True), _p("end", f"End, {_TIME_DOC}", True),
                 _p("step", "Step: seconds or a duration (1m30s)", True),
                 _p("timeout", "Evaluation timeout: seconds or a duration (at most 2m)"),
                 _p("stats", "Accepted and ignored")]
_SERIES_PARAMS = [_p("match[]", "Series selector (repeatable)"),
                  _p("start", f"Only series with samples from then, {_TIME_DOC}"),
                  _p("end", f"Only series with samples until then, {_TIME_DOC}"),
                  _p("limit", "Most entries returned (0: no limit)")]


def _form(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": {p["name"]: {"type": "string"} for p in params}}}}}


def _op(summary: str, op_id: str, params: list[dict[str, Any]], post: bool = False
        ) -> dict[str, Any]:
    get = {"tags": ["prometheus"], "x-scope": "query", "summary": summary,
           "operationId": op_id, "parameters": params, "responses": _responses(summary)}
    item = {"get": get}
    if post:
        # Prometheus also reads the query string of a POST: the same parameters, none
        # required there (the form body may carry them).
        item["post"] = {**get, "operationId": op_id + "Post",
                        "parameters": [{**p, "required": False} for p in params],
                        "requestBody": _form(params)}
    return item


OPENAPI = {
    "/api/v1/query": _op("PromQL instant query (Prometheus API; scope query)", "promQuery",
                         _QUERY_PARAMS, post=True),
    "/api/v1/query_range": _op("PromQL range query (Prometheus API; scope query)",
                               "promQueryRange", _RANGE_PARAMS, post=True),
    "/api/v1/series": _op("Series matching selectors (Prometheus API; scope query)", "promSeries",
                          _SERIES_PARAMS, post=True),
    "/api/v1/labels": _op("Label names (Prometheus API; scope query)", "promLabels",
                          _SERIES_PARAMS, post=True),
    "/api/v1/label/{name}/values": {"get": {
        "tags": ["prometheus"], "x-scope": "query", "operationId": "promLabelValues",
        "summary": "Values of a label (Prometheus API; scope query)",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "description": "Label name (__name__: metric names)",
                        "schema": {"type": "string"}}, *_SERIES_PARAMS],
        "responses": _responses("Values of the label")}},
    "/api/v1/metadata": _op("Metric metadata (Prometheus API; scope query)", "promMetadata",
                            [_p("metric", "Only this metric family"),
                             _p("limit", "Most families returned (0: no limit)")]),
    "/api/v1/status/buildinfo": _op("Build information (Prometheus API; scope query)",
                                    "promBuildinfo", []),
}
