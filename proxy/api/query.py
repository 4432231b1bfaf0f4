"""Query: GET /api/query (alias /v1/query), samples by selector over a range.

The tier (raw, 5m, 1h) follows from the step and the retention of each tier
(pgpulse.reads); the answer names the tier serving the newest part of the range.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, request

from pgpulse.reads import read_series
from proxy.api.openapi import (
    AGG,
    AUTH_ERRORS,
    END,
    SELECTOR,
    SERIES_RESULT,
    START,
    STEP,
    errors,
    json_ok,
    param,
)
from proxy.auth import request_tenant, require_scope
from proxy.errors import bad_request, json_response
from proxy.ranges import (
    aggregate,
    check_points,
    group_by,
    matched_series,
    no_match_warning,
    selector,
    time_range,
)
from proxy.state import state
from proxy.timeparse import unix

bp = Blueprint("query", __name__)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# How series that share the `by` labels combine, per aggregation over time.
COMBINE: dict[str, Callable[[list[float]], float]] = {
    "avg": _mean,
    "min": min,
    "max": max,
    "sum": sum,
    "count": sum,
    "last": sum,
    "rate": sum,
}


def group(found, points, by: tuple[str, ...], agg: str) -> list[dict]:
    groups: dict[tuple[str, ...], dict] = {}
    for sid, name, labels, _type in found:
        key = tuple(labels.get(k, "") for k in by)
        entry = groups.setdefault(key, {"names": set(), "values": {}})
        entry["names"].add(name)
        for t, v in points.get(sid, ()):
            entry["values"].setdefault(t, []).append(v)
    combine = COMBINE[agg]
    out = []
    for key, entry in sorted(groups.items()):
        if not entry["values"]:
            continue
        names = entry["names"]
        out.append({
            "name": next(iter(names)) if len(names) == 1 else None,
            "labels": {k: v for k, v in zip(by, key, strict=True) if v != ""},
            "points": [(t, combine(vs)) for t, vs in sorted(entry["values"].items())],
        })
    return out


@bp.get("/api/query")
@bp.get("/v1/query")
@require_scope("query")
def query() -> Response:
    st = state()
    settings = st.settings
    rng = time_range(settings)
    agg = aggregate()
    by = group_by()
    wanted = selector()  # syntax errors before touching the database
    with st.read_connection() as conn:
        found = matched_series(conn, settings, wanted, tenant=request_tenant())
        check_points(len(found), rng, settings)
        if agg == "rate":
            gauges = [f"{name}{labels}" for _id, name, labels, typ in found if typ != "counter"]
            if gauges:
                raise bad_request("rate applies to counters; the selector matches gauges",
                                  parameter="agg", gauges=gauges[:10])
        result = read_series(conn, [f[0] for f in found], rng.start, rng.end, rng.step, agg,
                             st.retention, epoch=True)
    if by is not None:
        series = group(found, result.points, by, agg)
    else:
        series = [
            # Points are (Unix seconds, value) tuples, serialised as they are.
            {"name": name, "labels": labels, "points": result.points[sid]}
            for sid, name, labels, _type in found if result.points.get(sid)
        ]
    body = {
        "tier": result.tier,
        "tiers": [{"tier": s.tier, "start": s.start, "end": s.end} for s in result.segments],
        "step": rng.step.total_seconds(),
        "start": unix(rng.start),
        "end": unix(rng.end),
        "agg": agg,
        "series": series,
    }
    if not found:
        body["warnings"] = [no_match_warning(request.args["query"])]
    return json_response(body)


_QUERY = {
    "tags": ["query"], "x-scope": "query",
    "summary": "Samples of the series a selector matches, aggregated per step (scope query)",
    "parameters": [SELECTOR, START, END, STEP, AGG,
                   param("by", "Comma-separated label names, each at most once: combine series "
                         "sharing their values")],
    "responses": {**json_ok("Points per series, and the tier that served them", SERIES_RESULT),
                  **errors(*AUTH_ERRORS)},
}
OPENAPI = {
    "/api/query": {"get": {**_QUERY, "operationId": "query"}},
    "/v1/query": {"get": {**_QUERY, "operationId": "queryV1", "summary": "Alias of /api/query"}},
}
