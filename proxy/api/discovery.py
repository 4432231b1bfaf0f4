"""Discovery: GET /api/series, /api/labels, /api/labels/<name>/values, /api/cardinality."""

from __future__ import annotations

from flask import Blueprint, Response

from pgpulse.store import series_reads
from pgpulse.store.series import SeriesLimits
from proxy.api.openapi import (
    AUTH_ERRORS,
    MATCH,
    errors,
    json_ok,
    limit_param,
    param,
)
from proxy.auth import request_tenant, require_scope
from proxy.errors import bad_request, json_response
from proxy.ranges import integer, selector
from proxy.state import state
from proxy.validation import LABEL_NAME

bp = Blueprint("discovery", __name__)
DEFAULT_LIMIT = 1000


def _limit(default: int = DEFAULT_LIMIT) -> int:
    return integer("limit", default, 1, state().settings.max_query_series)


@bp.get("/api/series")
@require_scope("query")
def series() -> Response:
    limit = _limit()
    match = selector("match", required=False)
    with state().read_connection() as conn:
        rows, truncated = series_reads.list_series(conn, match, limit, tenant=request_tenant())
    return json_response({
        "series": [{"id": i, "name": n, "labels": labels, "type": t, "created_at": c}
                   for i, n, labels, t, c in rows],
        "truncated": truncated,
    })


@bp.get("/api/labels")
@require_scope("query")
def labels() -> Response:
    match = selector("match", required=False)
    with state().read_connection() as conn:
        names = series_reads.label_names(conn, match, tenant=request_tenant())
    return json_response({"labels": ["__name__", *names]})


@bp.get("/api/labels/<name>/values")
@require_scope("query")
def label_values(name: str) -> Response:
    if name != "__name__" and not LABEL_NAME.fullmatch(name):
        raise bad_request(f"{name[:50]!r} is not a label name", parameter="name")
    limit = _limit(10_000)
    match = selector("match", required=False)
    with state().read_connection() as conn:
        values, truncated = series_reads.label_values(conn, name, match, limit, tenant=request_tenant())
    return json_response({"label": name, "values": values, "truncated": truncated})


@bp.get("/api/cardinality")
@require_scope("query")
def cardinality() -> Response:
    st = state()
    limit = _limit(10)
    with st.read_connection() as conn:
        tenant = request_tenant()
        card = series_reads.cardinality(conn, limit, tenant=tenant)
        limits = SeriesLimits.from_settings(st.core).for_tenant(conn, tenant)
    total = card.series
    return json_response({
        "tenant": tenant,
        "series": total,
        "limit": limits.max_series,
        "per_metric_limit": limits.max_series_per_metric,
        "metrics": [{"name": n, "series": c, "share": round(c / total, 4) if total else 0}
                    for n, c in card.top_metrics],
        "labels": [{"name": k, "series": n, "values": v} for k, n, v in card.top_labels],
    })


_MATCH = MATCH
_LIMIT = limit_param("Most series returned (1..PROXY_MAX_QUERY_SERIES)", "max_query_series",
                     DEFAULT_LIMIT)
_VALUES_LIMIT = limit_param("Most values returned (1..PROXY_MAX_QUERY_SERIES)", "max_query_series",
                            10_000)
_TOP_LIMIT = limit_param("How many top metrics and label names (1..PROXY_MAX_QUERY_SERIES)",
                         "max_query_series", 10)
OPENAPI = {
    "/api/series": {"get": {
        "tags": ["discovery"], "operationId": "series", "x-scope": "query",
        "summary": "Series of the catalogue (scope query)", "parameters": [_MATCH, _LIMIT],
        "responses": {**json_ok("Series", {"type": "object", "properties": {
            "series": {"type": "array", "items": {
                "type": "object", "required": ["id", "name", "labels", "type", "created_at"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                               "labels": {"type": "object",
                                          "additionalProperties": {"type": "string"}},
                               "type": {"type": "string", "enum": ["gauge", "counter"]},
                               "created_at": {"type": "string", "format": "date-time"}}}},
            "truncated": {"type": "boolean"}}}), **errors(*AUTH_ERRORS)},
    }},
    "/api/labels": {"get": {
        "tags": ["discovery"], "operationId": "labels", "x-scope": "query",
        "summary": "Label names in use (scope query)", "parameters": [_MATCH],
        "responses": {**json_ok("Label names", {"type": "object", "properties": {
            "labels": {"type": "array", "items": {"type": "string"}}}}), **errors(*AUTH_ERRORS)},
    }},
    "/api/labels/{name}/values": {"get": {
        "tags": ["discovery"], "operationId": "labelValues", "x-scope": "query",
        "summary": "Values of one label (__name__: metric names) (scope query)",
        "parameters": [param("name", "Label name, or __name__", where="path", required=True,
                              schema={"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}),
                        _MATCH, _VALUES_LIMIT],
        "responses": {**json_ok("Values", {"type": "object", "properties": {
            "label": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}},
            "truncated": {"type": "boolean"}}}), **errors(*AUTH_ERRORS)},
    }},
    "/api/cardinality": {"get": {
        "tags": ["discovery"], "operationId": "cardinality", "x-scope": "query",
        "summary": "Series count and limits; top metrics and label names by series (scope query)",
        "parameters": [_TOP_LIMIT],
        "responses": {**json_ok("Cardinality", {"type": "object", "properties": {
            "series": {"type": "integer"}, "limit": {"type": "integer"},
            "per_metric_limit": {"type": "integer"},
            "metrics": {"type": "array", "items": {"type": "object"}},
            "labels": {"type": "array", "items": {"type": "object"}}}}), **errors(*AUTH_ERRORS)},
    }},
}
