"""/api/openapi.json: the OpenAPI 3.1 document of every route of the app.

Each blueprint module contributes the paths it serves (its ``OPENAPI`` dict);
shared pieces (the error shape, auth schemes, common responses) live here.
tests/test_api_openapi.py checks that the document and the app's routes agree,
tests/test_schemathesis.py that the live proxy answers as it says.

The document is also the API's list of query parameters: a request to /api/ or
/v1/ that carries a query parameter its operation does not declare is a 400 that
names it and lists the known ones (:func:`reject_unknown_parameters`), so a
misspelt ``stpe=5m`` is never silently answered with the default step. Limits that
are settings appear in the document with the value in force
(``"x-maximum-setting": "<ProxySettings field>"`` in a fragment).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, request

from proxy.errors import bad_request, json_response
from proxy.settings import ProxySettings
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
        "TooMany": {
            **_error_response("A limit was reached: series cardinality, a rate limit (then "
                              "with Retry-After and the RateLimit-* headers), or on ingest the "
                              "tenant's monthly sample quota (the batch refused whole; used, "
                              "quota, batch, month, reset in the body, Retry-After until the "
                              "reset)"),
            "headers": {name: {"description": text, "schema": {"type": "integer"}} for name, text in (
                ("Retry-After", "Seconds until the rate-limit window (or the quota's month) resets"),
                ("RateLimit-Limit", "The limit of the window exceeded"),
                ("RateLimit-Remaining", "What remains of it (0)"),
                ("RateLimit-Reset", "Seconds until the window resets"),
            )},
        },
        "Unavailable": _error_response("The database is unreachable"),
    },
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "basic": {"type": "http", "scheme": "basic",
                  "description": "Basic credentials with the key as the password (any user name)"},
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
        "security": [{"bearer": []}, {"apiKey": []}, {"basic": []}],
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }


CHECKED_PREFIXES = ("/api/", "/v1/")  # operations endpoints (/health, /metrics) take anything


def app_paths() -> dict[str, Any]:
    """The OPENAPI fragments of every blueprint module of the current app, merged
    (collected once by create_app)."""
    return state().openapi_paths


def _with_settings(value: Any, settings: ProxySettings) -> Any:
    """``value`` with each ``x-maximum-setting`` made the ``maximum`` in force."""
    if isinstance(value, dict):
        out = {k: _with_settings(v, settings) for k, v in value.items() if k != "x-maximum-setting"}
        if "x-maximum-setting" in value:
            out["maximum"] = getattr(settings, value["x-maximum-setting"])
        return out
    if isinstance(value, list):
        return [_with_settings(v, settings) for v in value]
    return value


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    doc = document(_with_settings(app_paths(), state().settings))
    doc["info"]["x-auth"] = "on" if state().settings.auth else "off"
    return json_response(doc)


@bp.before_app_request
def reject_unknown_parameters() -> None:
    """A 400 for a query parameter the operation does not declare (see the module doc)."""
    rule = request.url_rule
    if not request.args or rule is None:
        return
    path = openapi_path(rule.rule)
    if not path.startswith(CHECKED_PREFIXES):
        return
    method = "get" if request.method == "HEAD" else request.method.lower()
    operation = app_paths().get(path, {}).get(method)
    if operation is None:
        return
    known = [p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"]
    unknown = sorted(set(request.args) - set(known))
    if unknown:
        names = [name[:50] for name in unknown[:10]]
        listed = ", ".join(repr(n) for n in names)
        raise bad_request(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {listed}; "
            f"{path} takes {', '.join(known) if known else 'no query parameters'}",
            parameter=names[0], unknown=names, known=known)


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


# 400: a key in the query string; 429: too many failed authentications from the address.
AUTH_ERRORS = (400, 401, 403, 429, 503)

# Parameter schemas say exactly what the server accepts where a schema can (ranges,
# enums, lengths); rules across parameters (start before end, the points limit) and
# the selector grammar beyond "not blank" are in the descriptions and answer 400.
SELECTOR = param("query", 'Prometheus selector: metric{label="v",other=~"re.*"} (not blank)',
                 required=True, schema={"type": "string", "minLength": 1, "maxLength": 4096,
                                        "pattern": "\\S"})
MATCH = param("match", "Optional selector restricting the series considered (blank: all)",
              schema={"type": "string", "maxLength": 4096})
_TIME = {"anyOf": [
    {"type": "string", "format": "date-time",
     "description": "RFC 3339, between 1970-01-01 and 2200-01-01"},
    {"type": "number", "minimum": 0, "maximum": 7_258_118_400, "description": "Unix seconds"},
]}
START = param("start", "RFC 3339 or Unix seconds, 1970..2200 (default: end - 1h)", schema=_TIME)
END = param("end", "RFC 3339 or Unix seconds, 1970..2200, after start (default: now)",
            schema=_TIME)
STEP = param("step", "Duration 1ms..366d: 10s, 5m, 1h, 1d, 1w, 500ms or seconds "
             "(default: about 500 points); (end - start) / step at most PROXY_MAX_POINTS_PER_SERIES",
             schema={"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?(ms|s|m|h|d|w)?\\s*$"})
AGG = param("agg", "Aggregation over each step (rate: counters only)", schema={
    "type": "string", "enum": ["avg", "min", "max", "sum", "count", "last", "rate"], "default": "avg"})
HOSTS = param("host", "Host (repeat for several; absent: all hosts)",
              schema={"type": "array", "items": {"type": "string"}})


def limit_param(description: str, setting_field: str, default: int) -> dict[str, Any]:
    """``limit``: an integer from 1 to the setting ``setting_field`` (a ProxySettings field)."""
    return param("limit", description, schema={"type": "integer", "minimum": 1, "default": default,
                                               "x-maximum-setting": setting_field})


IDEMPOTENCY_KEY = param(
    "Idempotency-Key",
    "1 to 200 printable characters. A batch retried with the same key and the same body is "
    "not written again and gets the first answer again (with Idempotent-Replayed: true); the "
    "same key with another body is a 409. Keys are per API key, kept "
    "PROXY_IDEMPOTENCY_TTL_SECONDS; only successful batches consume one.",
    where="header", schema={"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"})
WARNINGS = {"type": "array", "items": {"type": "string"},
            "description": "Present when something about the answer deserves a look "
                           "(e.g. the selector matched no series)"}
POINT = {
    "type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"},
    "description": "[Unix seconds of the step's start, value]",
}
SERIES_RESULT = {
    "type": "object",
    "required": ["tier", "tiers", "step", "start", "end", "agg", "series"],
    "properties": {
        "tier": {"type": "string", "enum": ["raw", "5m", "1h"]},
        "tiers": {"type": "array", "items": {"type": "object", "required": ["tier", "start", "end"],
                                             "properties": {
            "tier": {"type": "string", "enum": ["raw", "5m", "1h"]},
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"}}}},
        "step": {"type": "number", "exclusiveMinimum": 0},
        "start": {"type": "number"}, "end": {"type": "number"},
        "agg": {"type": "string", "enum": ["avg", "min", "max", "sum", "count", "last", "rate"]},
        "field": {"type": "string"},
        "series": {"type": "array", "items": {"type": "object", "required": ["name", "labels", "points"],
                                              "properties": {
            "name": {"type": ["string", "null"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "points": {"type": "array", "items": POINT},
        }}},
        "warnings": WARNINGS,
    },
}
