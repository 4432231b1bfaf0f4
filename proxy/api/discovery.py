"""Discovery: GET /api/series, /api/labels, /api/labels/<name>/values, /api/cardinality."""

from __future__ import annotations

from flask import Blueprint, Response, request
from psycopg import sql

from proxy.api.openapi import (
    AUTH_ERRORS,
    errors,
    json_ok,
    param,
)
from proxy.auth import require_scope
from proxy.errors import ApiError, bad_request, json_response
from proxy.selector import parse, where
from proxy.state import state
from proxy.validation import LABEL_NAME

bp = Blueprint("discovery", __name__)
DEFAULT_LIMIT = 1000


def _limit(default: int = DEFAULT_LIMIT) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= state().settings.max_query_series:
        raise bad_request(f"limit: expected an integer 1..{state().settings.max_query_series}",
                          parameter="limit")
    return int(raw)


def _match() -> tuple[sql.Composable, list[object]]:
    """The optional ``match`` selector as a condition on series (TRUE when absent)."""
    raw = request.args.get("match")
    if raw is None or not raw.strip():
        return sql.SQL("TRUE"), []
    try:
        return where(parse(raw))
    except ApiError as exc:  # the selector's errors name "query"; here it is "match"
        if exc.details.get("parameter") == "query":
            exc.details["parameter"] = "match"
        raise


@bp.get("/api/series")
@require_scope("query")
def series() -> Response:
    limit = _limit()
    condition, params = _match()
    query = sql.SQL(
        "SELECT id, name, labels, type, created_at FROM series WHERE {} ORDER BY name, id LIMIT %s"
    ).format(condition)
    with state().connection() as conn:
        rows = conn.execute(query, [*params, limit + 1]).fetchall()
    return json_response({
        "series": [{"id": i, "name": n, "labels": labels, "type": t, "created_at": c}
                   for i, n, labels, t, c in rows[:limit]],
        "truncated": len(rows) > limit,
    })


@bp.get("/api/labels")
@require_scope("query")
def labels() -> Response:
    condition, params = _match()
    query = sql.SQL(
        "SELECT DISTINCT jsonb_object_keys(labels) AS k FROM series WHERE {} ORDER BY k"
    ).format(condition)
    with state().connection() as conn:
        rows = conn.execute(query, params).fetchall()
    return json_response({"labels": ["__name__", *(r[0] for r in rows)]})


@bp.get("/api/labels/<name>/values")
@require_scope("query")
def label_values(name: str) -> Response:
    if name != "__name__" and not LABEL_NAME.fullmatch(name):
        raise bad_request(f"{name[:50]!r} is not a label name", parameter="name")
    limit = _limit(10_000)
    condition, params = _match()
    if name == "__name__":
        query = sql.SQL("SELECT DISTINCT name FROM series WHERE {} ORDER BY 1 LIMIT %s").format(condition)
        args = [*params, limit + 1]
    else:
        query = sql.SQL(
            "SELECT DISTINCT labels ->> %s FROM series WHERE labels ? %s AND {} ORDER BY 1 LIMIT %s"
        ).format(condition)
        args = [name, name, *params, limit + 1]
    with state().connection() as conn:
        rows = conn.execute(query, args).fetchall()
    return json_response({"label": name, "values": [r[0] for r in rows[:limit]],
                          "truncated": len(rows) > limit})


@bp.get("/api/cardinality")
@require_scope("query")
def cardinality() -> Response:
    st = state()
    limit = _limit(10)
    with st.connection() as conn:
        total = conn.execute("SELECT count(*) FROM series").fetchone()[0]
        top_metrics = conn.execute(
            "SELECT name, count(*) AS n FROM series GROUP BY name ORDER BY n DESC, name LIMIT %s",
            (limit,),
        ).fetchall()
        top_labels = conn.execute(
            "SELECT k, count(*) AS n, count(DISTINCT labels ->> k) AS v "
            "FROM series, jsonb_object_keys(labels) AS k GROUP BY k ORDER BY n DESC, k LIMIT %s",
            (limit,),
        ).fetchall()
    return json_response({
        "series": total,
        "limit": st.core.max_series,
        "per_metric_limit": st.core.max_series_per_metric,
        "metrics": [{"name": n, "series": c, "share": round(c / total, 4) if total else 0}
                    for n, c in top_metrics],
        "labels": [{"name": k, "series": n, "values": v} for k, n, v in top_labels],
    })


_MATCH = param("match", "Optional selector restricting the series considered")
_LIMIT = param("limit", "Most entries returned", schema={"type": "integer", "minimum": 1})
OPENAPI = {
    "/api/series": {"get": {
        "tags": ["discovery"], "operationId": "series", "x-scope": "query",
        "summary": "Series of the catalogue (scope query)", "parameters": [_MATCH, _LIMIT],
        "responses": {**json_ok("Series", {"type": "object", "properties": {
            "series": {"type": "array", "items": {"type": "object"}},
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
        "parameters": [param("name", "Label name", where="path", required=True), _MATCH, _LIMIT],
        "responses": {**json_ok("Values", {"type": "object", "properties": {
            "label": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}},
            "truncated": {"type": "boolean"}}}), **errors(*AUTH_ERRORS)},
    }},
    "/api/cardinality": {"get": {
        "tags": ["discovery"], "operationId": "cardinality", "x-scope": "query",
        "summary": "Series count and limits; top metrics and label names by series (scope query)",
        "parameters": [_LIMIT],
        "responses": {**json_ok("Cardinality", {"type": "object", "properties": {
            "series": {"type": "integer"}, "limit": {"type": "integer"},
            "per_metric_limit": {"type": "integer"},
            "metrics": {"type": "array", "items": {"type": "object"}},
            "labels": {"type": "array", "items": {"type": "object"}}}}), **errors(*AUTH_ERRORS)},
    }},
}
