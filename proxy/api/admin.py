"""Administration (scope admin): tenants, API keys and the audit log.

* ``GET /api/keys``: the keys of the request's tenant (never the keys themselves),
  ``?all=true`` with revoked ones;
* ``POST /api/keys`` ``{"name": ..., "scopes": [...]}``: a new key of the request's
  tenant (``X-Scope-OrgID`` names another), shown once;
* ``DELETE /api/keys/<id>``: revoke a key of the request's tenant (not the request's
  own: 409);
* ``GET /api/tenants``, ``POST /api/tenants`` ``{"id", "name"?, overrides...}``,
  ``GET|PATCH|DELETE /api/tenants/<id>``: tenants and their overrides of the
  settings (``pgpulse.store.tenants``);
* ``GET /api/audit``: the audit log, newest first, with filters and keyset paging.

Creating and revoking a key and every change of a tenant are recorded in the audit
log (``pgpulse.store.audit``) in the same transaction as the act; a revocation of
no live key is recorded as refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, request

from pgpulse.store import audit, keys, tenants
from pgpulse.store.errors import StoreError
from proxy.api.openapi import AUTH_ERRORS, errors, json_ok, param
from proxy.auth import actor, request_tenant, require_scope
from proxy.body import json_body
from proxy.errors import ApiError, bad_request, json_response
from proxy.ranges import integer
from proxy.state import state
from proxy.timeparse import parse_time

bp = Blueprint("admin", __name__)

MAX_BODY = 64 * 1024
MAX_NAME = 200


def _flag(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise bad_request(f"{name}: expected true or false", parameter=name, value=raw[:100])
    return raw == "true"


def _time_param(name: str) -> datetime | None:
    raw = request.args.get(name)
    return None if raw is None else parse_time(raw, name)


# -- keys -----------------------------------------------------------------------------


@bp.get("/api/keys")
@require_scope("admin")
def list_keys() -> Response:
    with state().connection() as conn:
        rows = keys.list_keys(conn, include_revoked=_flag("all"), tenant=request_tenant())
    return json_response({"keys": rows})


@bp.post("/api/keys")
@require_scope("admin")
def create_key() -> Response:
    body, _ = json_body(MAX_BODY)
    if not isinstance(body, dict):
        raise bad_request('expected a JSON object: {"name": "...", "scopes": ["query"]}')
    unknown = sorted(set(body) - {"name", "scopes"})
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}", fields=unknown)
    name, scopes = body.get("name"), body.get("scopes")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise bad_request(f"name: expected 1 to {MAX_NAME} printable characters", field="name")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise bad_request(f"scopes: expected a list of some of {', '.join(keys.SCOPES)}", field="scopes")
    bad = sorted(set(scopes) - set(keys.SCOPES))
    if bad:
        raise bad_request(f"scopes: unknown {', '.join(bad[:5])}; use some of {', '.join(keys.SCOPES)}",
                          field="scopes")
    with state().connection() as conn:
        key, row = keys.create_key(conn, name, scopes, tenant=request_tenant())
        audit.record(conn, actor(), "key.create", target=f"key:{row['id']}",
                     name=row["name"], scopes=row["scopes"], prefix=row["prefix"], tenant=row["tenant"])
    return json_response({**row, "key": key}, 201)


@bp.delete("/api/keys/<int:key_id>")
@require_scope("admin")
def revoke_key(key_id: int) -> Response:
    if key_id == g.get("api_key_id"):
        # Revoking the key of the request would lock its holder out mid-task; another
        # admin key, or `pgpulse keys revoke`, can.
        with state().connection() as conn:
            audit.record(conn, actor(), "key.revoke", target=f"key:{key_id}", outcome="refused",
                         reason="a key cannot revoke itself")
        raise ApiError(409, "a key cannot revoke itself: use another admin key or `pgpulse keys revoke`",
                       key_id=key_id)
    with state().connection() as conn:
        n = keys.revoke_key(conn, str(key_id), tenant=request_tenant())
        audit.record(conn, actor(), "key.revoke", target=f"key:{key_id}",
                     outcome="ok" if n else "refused", revoked=n, tenant=request_tenant())
    if n == 0:
        raise ApiError(404, f"no live key with id {key_id}", key_id=key_id)
    return json_response({"revoked": key_id,
                          "note": "running proxies stop accepting it within PROXY_KEY_CACHE_SECONDS"})


# -- tenants --------------------------------------------------------------------------


def _tenant_body(allowed: set[str]) -> dict[str, Any]:
    body, _ = json_body(MAX_BODY)
    if not isinstance(body, dict):
        raise bad_request('expected a JSON object: {"id": "acme", "name": "Acme", "max_series": 5000}')
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown[:10])}; expected some of "
                          f"{', '.join(sorted(allowed))}", fields=unknown[:10])
    name = body.get("name")
    # A tenant always has a name: null is refused like any other non-string (leave the
    # field out to keep the name as it is).
    if "name" in body and (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME
                           or not name.isprintable()):
        raise bad_request(f"name: expected 1 to {MAX_NAME} printable characters", field="name")
    for field in tenants.OVERRIDES:
        value = body.get(field)
        low = 0 if field == "monthly_sample_quota" else 1
        if value is not None and (type(value) is not int or not low <= value <= tenants.MAXIMA[field]):
            raise bad_request(f"{field}: expected a whole number from {low} to {tenants.MAXIMA[field]}, "
                              "or null for the global setting", field=field)
    return body


def _tenant_change(action: str, target: str, act) -> Any:
    """Run ``act(conn)`` and record it; a refusal of the store is recorded as refused."""
    with state().connection() as conn:
        try:
            with conn.transaction():
                result = act(conn)
        except (StoreError, ValueError) as exc:
            audit.record(conn, actor(), action, target=f"tenant:{target}", outcome="refused",
                         reason=str(exc))
            conn.commit()
            if isinstance(exc, ValueError):
                raise bad_request(str(exc)) from None
            raise
        audit.record(conn, actor(), action, target=f"tenant:{target}",
                     **({"tenant": {k: v for k, v in result.items() if k != "created_at"}}
                        if isinstance(result, dict) else {}))
    return result


@bp.get("/api/tenants")
@require_scope("admin")
def list_tenants() -> Response:
    with state().connection() as conn:
        return json_response({"tenants": tenants.list_tenants(conn)})


@bp.post("/api/tenants")
@require_scope("admin")
def create_tenant() -> Response:
    body = _tenant_body({"id", "name", *tenants.OVERRIDES})
    tenant_id = body.get("id")
    problem = tenants.id_problem(tenant_id)
    if problem:
        raise bad_request(f"id: {problem}", field="id")
    overrides = {k: body[k] for k in tenants.OVERRIDES if k in body}
    row = _tenant_change("tenant.create", tenant_id,
                         lambda conn: tenants.create(conn, tenant_id, body.get("name"), **overrides))
    return json_response(row, 201)


@bp.get("/api/tenants/<tenant_id>")
@require_scope("admin")
def get_tenant(tenant_id: str) -> Response:
    with state().connection() as conn:
        return json_response(tenants.get(conn, tenant_id))


@bp.patch("/api/tenants/<tenant_id>")
@require_scope("admin")
def update_tenant(tenant_id: str) -> Response:
    body = _tenant_body({"name", *tenants.OVERRIDES})
    overrides = {k: body[k] for k in tenants.OVERRIDES if k in body}
    row = _tenant_change("tenant.update", tenant_id,
                         lambda conn: tenants.update(conn, tenant_id, body.get("name"), **overrides))
    return json_response(row)


@bp.delete("/api/tenants/<tenant_id>")
@require_scope("admin")
def delete_tenant(tenant_id: str) -> Response:
    _tenant_change("tenant.delete", tenant_id, lambda conn: tenants.delete(conn, tenant_id))
    return json_response({"deleted": tenant_id})


# -- audit ----------------------------------------------------------------------------


@bp.get("/api/audit")
@require_scope("admin")
def list_audit() -> Response:
    args = request.args
    outcome = args.get("outcome")
    if outcome is not None and outcome not in audit.OUTCOMES:
        raise bad_request(f"outcome: expected one of {', '.join(audit.OUTCOMES)}", parameter="outcome")
    filters = audit.Filters(
        action=args.get("action") or None,
        actor=args.get("actor") or None,
        outcome=outcome,
        since=_time_param("since"),
        until=_time_param("until"),
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise bad_request("since is after until", parameter="since")
    limit = integer("limit", 100, 1, audit.MAX_PAGE)
    before = integer("before", 0, 0, 2**63 - 1) or None
    with state().connection() as conn:
        entries, cursor = audit.list_entries(conn, filters, limit=limit, before_id=before)
    return json_response({"entries": entries, "next_before": cursor})


# -- OpenAPI --------------------------------------------------------------------------

_KEY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "prefix": {"type": "string"},
    "scopes": {"type": "array", "items": {"type": "string", "enum": list(keys.SCOPES)}},
    "tenant": {"type": "string"},
    "created_at": {"type": "string", "format": "date-time"},
    "last_used_at": {"type": ["string", "null"], "format": "date-time"},
    "revoked_at": {"type": ["string", "null"], "format": "date-time"}}}
_ENTRY = {"type": "object", "properties": {
    "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
    "actor": {"type": "string", "description": "key:<id>, cli:<user> or anonymous (auth off)"},
    "actor_key_id": {"type": ["integer", "null"]},
    "action": {"type": "string", "enum": list(audit.ACTIONS)},
    "target": {"type": ["string", "null"]}, "address": {"type": ["string", "null"]},
    "outcome": {"type": "string", "enum": list(audit.OUTCOMES)},
    "details": {"type": "object"}}}
_NOT_FOUND = {"description": "No live key with this id",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TENANT_WRITABLE = {"name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                    **{c: {"type": ["integer", "null"], "minimum": 0 if c == "monthly_sample_quota" else 1,
                           "maximum": tenants.MAXIMA[c],
                           "description": "overrides the global setting; null: the global setting holds"}
                       for c in tenants.OVERRIDES}}
_TENANT = {"type": "object", "properties": {
    "id": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
    **_TENANT_WRITABLE}}
_TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}

OPENAPI: dict[str, Any] = {
    "/api/keys": {
        "get": {
            "tags": ["admin"], "operationId": "listKeys", "x-scope": "admin",
            "summary": "API keys, never the keys themselves (scope admin)",
            "parameters": [param("all", "Include revoked keys",
                                 schema={"type": "string", "enum": ["true", "false"]})],
            "responses": {**json_ok("The keys", {"type": "object", "properties": {
                "keys": {"type": "array", "items": _KEY}}}), **errors(*AUTH_ERRORS)},
        },
        "post": {
            "tags": ["admin"], "operationId": "createKey", "x-scope": "admin",
            "summary": "Create an API key; the key is in this answer only (scope admin; audited)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name", "scopes"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
                               "scopes": {"type": "array", "minItems": 1, "items": {
                                   "type": "string", "enum": list(keys.SCOPES)}}}}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {
                "schema": {**_KEY, "properties": {**_KEY["properties"], "key": {"type": "string"}}}}}},
                **errors(*AUTH_ERRORS)},
        },
    },
    "/api/keys/{key_id}": {"delete": {
        "tags": ["admin"], "operationId": "revokeKey", "x-scope": "admin",
        "summary": "Revoke an API key (scope admin; audited)",
        "parameters": [param("key_id", "The key's id", where="path", required=True,
                             schema={"type": "integer", "minimum": 0})],
        "responses": {**json_ok("Revoked", {"type": "object"}), "404": _NOT_FOUND,
                      "409": {**_NOT_FOUND, "description": "The key of the request itself"},
                      **errors(*AUTH_ERRORS)},
    }},
    "/api/tenants": {
        "get": {
            "tags": ["admin"], "operationId": "listTenants", "x-scope": "admin",
            "summary": "Tenants with their overrides, live keys and series (scope admin)",
            "responses": {**json_ok("The tenants", {"type": "object", "properties": {
                "tenants": {"type": "array", "items": _TENANT}}}), **errors(*AUTH_ERRORS)},
        },
        "post": {
            "tags": ["admin"], "operationId": "createTenant", "x-scope": "admin",
            "summary": "Create a tenant (scope admin; audited)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["id"], "additionalProperties": False,
                "properties": {"id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
                               **_TENANT_WRITABLE}}}}},
            "responses": {"201": {"description": "Created", "content": {"application/json": {
                "schema": _TENANT}}}, "409": {**_NOT_FOUND, "description": "The id is taken"},
                **errors(*AUTH_ERRORS)},
        },
    },
    "/api/tenants/{tenant_id}": {
        "get": {
            "tags": ["admin"], "operationId": "getTenant", "x-scope": "admin",
            "parameters": [param("tenant_id", "The tenant's id", where="path", required=True)],
            "summary": "One tenant (scope admin)",
            "responses": {**json_ok("The tenant", _TENANT),
                          "404": {**_NOT_FOUND, "description": "No such tenant"}, **errors(*AUTH_ERRORS)},
        },
        "patch": {
            "tags": ["admin"], "operationId": "updateTenant", "x-scope": "admin",
            "parameters": [param("tenant_id", "The tenant's id", where="path", required=True)],
            "summary": "Change a tenant's name or overrides; null restores the global setting "
                       "(scope admin; audited)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False, "properties": _TENANT_WRITABLE}}}},
            "responses": {**json_ok("The tenant", _TENANT),
                          "404": {**_NOT_FOUND, "description": "No such tenant"}, **errors(*AUTH_ERRORS)},
        },
        "delete": {
            "tags": ["admin"], "operationId": "deleteTenant", "x-scope": "admin",
            "parameters": [param("tenant_id", "The tenant's id", where="path", required=True)],
            "summary": "Delete a tenant that owns no keys and no data (scope admin; audited)",
            "responses": {**json_ok("Deleted", {"type": "object"}),
                          "404": {**_NOT_FOUND, "description": "No such tenant"},
                          "409": {**_NOT_FOUND, "description": "The default tenant, or one that owns keys or data"},
                          **errors(*AUTH_ERRORS)},
        },
    },
    "/api/audit": {"get": {
        "tags": ["admin"], "operationId": "listAudit", "x-scope": "admin",
        "summary": "The audit log of administrative acts, newest first (scope admin)",
        "parameters": [
            param("action", "An action (key.create) or a prefix ending in a dot (key.)"),
            param("actor", "Exactly this actor: key:<id>, cli:<user> or anonymous"),
            param("outcome", "Only this outcome", schema={"type": "string", "enum": list(audit.OUTCOMES)}),
            param("since", "RFC 3339 or Unix seconds: entries at or after", schema=_TIME),
            param("until", "RFC 3339 or Unix seconds: entries before", schema=_TIME),
            param("limit", "Entries per page", schema={"type": "integer", "minimum": 1,
                                                       "maximum": audit.MAX_PAGE, "default": 100}),
            param("before", "Paging: the next_before of the previous page",
                  schema={"type": "integer", "minimum": 0}),
        ],
        "responses": {**json_ok("A page of entries; next_before is null on the last page", {
            "type": "object", "properties": {"entries": {"type": "array", "items": _ENTRY},
                                             "next_before": {"type": ["integer", "null"]}}}),
            **errors(*AUTH_ERRORS)},
    }},
}
