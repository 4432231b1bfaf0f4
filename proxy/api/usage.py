"""``GET /api/usage`` (scope query or admin): samples stored by the key's tenant this
month and in the months before, against its monthly quota.

Figures from ``pgpulse.store.usage``: what a batch's transaction committed, so the
same figures a refusal (429) quotes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from pgpulse.store import usage
from proxy.api.openapi import AUTH_ERRORS, errors, json_ok, param
from proxy.auth import request_tenant, require_scope
from proxy.errors import json_response
from proxy.ranges import integer
from proxy.state import state

bp = Blueprint("usage", __name__)

DEFAULT_MONTHS = 12


@bp.get("/api/usage")
@require_scope("query")
def get_usage() -> Response:
    count = integer("months", DEFAULT_MONTHS, 1, usage.MAX_MONTHS)
    tenant = request_tenant()
    st = state()
    with st.connection() as conn:
        limit = usage.quota(conn, tenant, st.core.monthly_sample_quota)
        months = usage.months(conn, tenant, count)
    current = months[0]
    return json_response({
        "tenant": tenant,
        "quota": limit,
        "month": current.month.isoformat(),
        "used": current.samples,
        "remaining": None if limit is None else max(0, limit - current.samples),
        "reset": usage.reset_time(current.month),
        "months": [{"month": m.month.isoformat(), "samples": m.samples} for m in months],
    })


_MONTH = {"type": "string", "format": "date", "description": "First day of the month (UTC)"}
OPENAPI: dict[str, Any] = {
    "/api/usage": {"get": {
        "tags": ["ingest"], "operationId": "getUsage", "x-scope": "query",
        "summary": "Samples stored by the key's tenant per month, against its monthly quota "
                   "(scope query or admin)",
        "description": "Every sample a batch stores counts once per write, on every ingest "
                       "endpoint (JSON, snapshots, remote write, OTLP, Influx). A batch that "
                       "would pass the quota is refused whole with 429 and these figures; the "
                       "quota resets at 00:00 UTC on the first of the next month.",
        "parameters": [param("months", "Months listed, the current one first",
                             schema={"type": "integer", "minimum": 1, "maximum": usage.MAX_MONTHS,
                                     "default": DEFAULT_MONTHS})],
        "responses": {**json_ok("Usage against the quota", {
            "type": "object",
            "required": ["tenant", "quota", "month", "used", "remaining", "reset", "months"],
            "properties": {
                "tenant": {"type": "string"},
                "quota": {"type": ["integer", "null"],
                          "description": "Samples per month; null: unlimited"},
                "month": _MONTH,
                "used": {"type": "integer", "description": "Samples stored this month"},
                "remaining": {"type": ["integer", "null"], "description": "null: unlimited"},
                "reset": {"type": "string", "format": "date-time",
                          "description": "When this month's count ends"},
                "months": {"type": "array", "items": {"type": "object", "properties": {
                    "month": _MONTH, "samples": {"type": "integer"}}}},
            }}), **errors(*AUTH_ERRORS)},
    }},
}
