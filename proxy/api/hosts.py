"""Host snapshots: GET /api/hosts (hosts and when each was last seen) and
GET /api/hosts/query (one headline field of the snapshots over a range, tier-aware)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from pgpulse.reads import read_host_field
from pgpulse.store import host_reads
from pgpulse.tiers import HOST_FIELDS
from proxy.api.openapi import (
    AGG,
    AUTH_ERRORS,
    END,
    HOSTS,
    SERIES_RESULT,
    START,
    STEP,
    errors,
    json_ok,
    param,
)
from proxy.auth import request_tenant, require_scope
from proxy.errors import bad_request, json_response
from proxy.ranges import aggregate, check_points, host_list, time_range
from proxy.state import state
from proxy.timeparse import unix

bp = Blueprint("hosts", __name__)


@bp.get("/api/hosts")
@require_scope("query")
def hosts() -> Response:
    with state().read_connection() as conn:
        rows = host_reads.list_hosts(conn, tenant=request_tenant())
    return json_response({"hosts": [{"host": h, "last_seen": t} for h, t in rows]})


def host_params() -> tuple[list[str] | None, str]:
    hosts = host_list()
    field = request.args.get("field") or ""
    if field not in HOST_FIELDS:
        raise bad_request(f"field: expected one of {', '.join(HOST_FIELDS)}", parameter="field",
                          fields=list(HOST_FIELDS))
    return hosts, field


@bp.get("/api/hosts/query")
@require_scope("query")
def host_query() -> Response:
    st = state()
    hosts, field = host_params()
    rng = time_range(st.settings)
    agg = aggregate()
    if agg == "rate":
        raise bad_request("rate applies to counters; host fields are gauges", parameter="agg")
    with st.read_connection() as conn:
        count = len(host_reads.list_hosts(conn, tenant=request_tenant())) if hosts is None else len(hosts)
        check_points(max(count, 1), rng, st.settings)
        result = read_host_field(conn, hosts, field, rng.start, rng.end, rng.step, agg, st.retention,
                                 tenant=request_tenant(), epoch=True)
    return json_response({
        "tier": result.tier,
        "tiers": [{"tier": s.tier, "start": s.start, "end": s.end} for s in result.segments],
        "field": field,
        "step": rng.step.total_seconds(),
        "start": unix(rng.start),
        "end": unix(rng.end),
        "agg": agg,
        "series": [
            {"name": field, "labels": {"host": host}, "points": pts}
            for host, pts in sorted(result.points.items())
        ],
    })


OPENAPI = {
    "/api/hosts": {"get": {
        "tags": ["hosts"], "operationId": "hosts", "x-scope": "query",
        "summary": "Hosts that sent snapshots, with the time each was last seen (scope query)",
        "responses": {**json_ok("Hosts", {"type": "object", "properties": {"hosts": {
            "type": "array", "items": {"type": "object", "properties": {
                "host": {"type": "string"}, "last_seen": {"type": "string", "format": "date-time"}}}}}}),
            **errors(*AUTH_ERRORS)},
    }},
    "/api/hosts/query": {"get": {
        "tags": ["hosts"], "operationId": "hostQuery", "x-scope": "query",
        "summary": "One headline field of host snapshots over a range, tier-aware (scope query)",
        "parameters": [
            param("field", "Headline field", required=True,
                  schema={"type": "string", "enum": list(HOST_FIELDS)}),
            HOSTS, START, END, STEP, AGG,
        ],
        "responses": {**json_ok("Points per host", SERIES_RESULT), **errors(*AUTH_ERRORS)},
    }},
}
