"""GET /api/status: what `pgpulse status` prints, for the console and for scripts:
engine mode, schema revision (and head), rows, newest time and lag of every tier,
and whether the ETL is on. Counters (ingest rate, rejections by reason) are on
/metrics."""

from __future__ import annotations

import functools

from flask import Blueprint, Response

from pgpulse import engine as engine_mode
from pgpulse import schema, tiers
from pgpulse.store.tenants import DEFAULT_TENANT
from proxy.api.openapi import AUTH_ERRORS, errors, json_ok
from proxy.auth import request_tenant, require_scope
from proxy.errors import json_response
from proxy.state import state

bp = Blueprint("status", __name__)


@functools.cache
def _head() -> str:
    return schema.head_revision()


@bp.get("/api/status")
@require_scope("query")
def status() -> Response:
    st = state()
    with st.connection() as conn:
        mode = engine_mode.recorded(conn)
        current = schema.current_revision(conn)
        # Tier figures count every tenant's rows: the default tenant's keys (the
        # operator's) see them, another tenant's keys see none.
        rows = tiers.status(conn) if mode and request_tenant() == DEFAULT_TENANT else []
    head = _head()
    return json_response({
        "engine": mode,
        "revision": current,
        "head": head,
        "at_head": current == head,
        "auth": "on" if st.settings.auth else "off",
        "etl": {"on": st.etl is not None, "reason": st.etl_off},
        "tiers": [
            {"relation": t.relation, "tier": t.tier, "rows": t.rows, "newest": t.newest,
             "lag_seconds": t.lag.total_seconds() if t.lag is not None else None,
             "late_writes_pending": t.late_writes}
            for t in rows
        ],
    })


_TIER = {"type": "object", "properties": {
    "relation": {"type": "string"}, "tier": {"type": "string", "enum": ["raw", "5m", "1h"]},
    "rows": {"type": "integer"}, "newest": {"type": ["string", "null"], "format": "date-time"},
    "lag_seconds": {"type": ["number", "null"]},
    "late_writes_pending": {"type": ["integer", "null"]}}}
OPENAPI = {
    "/api/status": {"get": {
        "tags": ["operations"], "operationId": "status", "x-scope": "query",
        "summary": "Engine mode, schema revision, rows and lag of every tier, ETL on/off (scope query)",
        "responses": {**json_ok("Status", {"type": "object", "properties": {
            "engine": {"type": ["string", "null"]}, "revision": {"type": ["string", "null"]},
            "head": {"type": "string"}, "at_head": {"type": "boolean"},
            "auth": {"type": "string", "enum": ["on", "off"]},
            "etl": {"type": "object", "properties": {"on": {"type": "boolean"},
                                                     "reason": {"type": ["string", "null"]}}},
            "tiers": {"type": "array", "items": _TIER}}}), **errors(*AUTH_ERRORS)},
    }},
}
