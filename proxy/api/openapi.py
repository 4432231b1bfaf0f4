"""/api/openapi.json: the OpenAPI 3.1 document of every route of the app.

Each blueprint module contributes the paths it serves (its ``OPENAPI`` dict);
shared pieces (the error shape, auth schemes, common responses) live here.
tests/test_api_openapi.py checks that the document and the app's routes agree.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response

from proxy.errors import json_response
from proxy.state import state

bp = Blueprint("openapi", __name__)

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "What was wrong"}},
    "additionalProperties": True,
    "description": "Every error: a message plus details (index, field, limit, count, ...)",
}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


COMPONENTS: dict[str, Any] = {
    "schemas": {"Error": ERROR},
    "responses": {
        "BadRequest": _error_response("Bad input: the message names what was wrong"),
        "Unauthorized": _error_response("Missing, unknown or revoked API key"),
        "Forbidden": _error_response("The API key lacks the scope this endpoint needs"),
        "TooLarge": _error_response("Request body too large (also after decompression)"),
        "TooMany": _error_response("A limit was reached (series cardinality)"),
        "Unavailable": _error_response("The database is unreachable"),
    },
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    },
}

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")


def openapi_path(rule: str) -> str:
    """A Flask rule (``/api/labels/<name>/values``) as an OpenAPI path."""
    return _CONVERTER.sub(r"{\1}", rule)


def document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pgpulse proxy",
            "version": "1",
            "description": "Ingest, query and export metrics; host snapshots; operations. "
                           "Errors are JSON objects with an 'error' message. See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    doc = document(state().openapi_paths)
    doc["info"]["x-auth"] = "on" if state().settings.auth else "off"
    return json_response(doc)


OPENAPI = {
    "/api/openapi.json": {"get": {
        "tags": ["operations"], "summary": "This document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
}


# -- helpers for the blueprint modules' OPENAPI fragments ---------------------------


def param(name: str, description: str, *, where: str = "query", required: bool = False,
          schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def errors(*codes: int) -> dict[str, Any]:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 413: "TooLarge",
             429: "TooMany", 503: "Unavailable"}
    return {str(c): {"$ref": f"#/components/responses/{names[c]}"} for c in codes}


def json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


AUTH_ERRORS = (400, 401, 403, 503)  # 400: a key in the query string

SELECTOR = param("query", 'Prometheus selector: metric{label="v",other=~"re.*"}', required=True)
START = param("start", "RFC 3339 or Unix seconds (default: end - 1h)")
END = param("end", "RFC 3339 or Unix seconds (default: now)")
STEP = param("step", "Duration: 10s, 5m, 1h, 1d or seconds (default: about 500 points)")
AGG = param("agg", "Aggregation over each step", schema={
    "type": "string", "enum": ["avg", "min", "max", "sum", "count", "last", "rate"], "default": "avg"})
SERIES_RESULT = {
    "type": "object",
    "required": ["tier", "series"],
    "properties": {
        "tier": {"type": "string", "enum": ["raw", "5m", "1h"]},
        "tiers": {"type": "array", "items": {"type": "object"}},
        "step": {"type": "number"}, "start": {"type": "number"}, "end": {"type": "number"},
        "agg": {"type": "string"},
        "series": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": ["string", "null"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "points": {"type": "array", "items": {"type": "array", "prefixItems": [
                {"type": "number", "description": "Unix seconds"}, {"type": "number"}]}},
        }}},
    },
}
