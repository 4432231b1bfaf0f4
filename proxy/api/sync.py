"""The ETL's HTTP API: runs (/api/sync/...), rejects and replay, and /api/reading.

* ``GET|POST /api/sync/reading``: run the ETL now (up to ETL_MAX_BATCHES batches,
  or ``?max_batches=N``, 0: until the backlog is empty); 200 with the counts, 409
  with the running run's id while another run goes, 503 when MongoDB is down or
  the ETL is not configured (the failed run is recorded).
* ``GET /api/sync/runs`` and ``/api/sync/runs/<id>``: the run record.
* ``GET /api/sync/rejects``; ``POST /api/sync/rejects/replay`` (admin).
* ``GET /api/reading``: loaded readings with filters and keyset pagination.

The ETL service is built by ``create_app`` (``state().etl``): without MONGO_URI,
or with unusable ETL settings, these endpoints answer 503 with the reason and the
rest of the proxy is unaffected. The views hold no SQL: runs go through the
service, records and readings are read through the store.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Response, request

from etl import replay, runs
from etl.service import EtlService
from etl.source import SourceError
from pgpulse.store import audit, etl_runs, readings
from pgpulse.store.tenants import DEFAULT_TENANT
from proxy.auth import actor, request_tenant, require_scope
from proxy.body import json_body
from proxy.errors import ApiError, bad_request, json_response
from proxy.state import state
from proxy.timeparse import parse_time

log = logging.getLogger("proxy.api.sync")
bp = Blueprint("etl", __name__)

MAX_BATCHES_PARAM = 10_000
MAX_BODY = 1024 * 1024


def _etl() -> EtlService:
    st = state()
    if request_tenant() != DEFAULT_TENANT:
        # The ETL has one source and loads it into the default tenant: another tenant's
        # key may read its own (empty) runs and readings, never drive the ETL.
        raise ApiError(403, "the ETL loads readings into the default tenant; only a key of "
                            "that tenant (or an admin key without X-Scope-OrgID) may run or replay it")
    if st.etl is None:
        raise ApiError(503, st.etl_off or "the ETL is not configured")
    return st.etl


def _int_param(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name}: expected an integer", parameter=name, value=raw[:100]) from None
    if not low <= value <= high:
        raise bad_request(f"{name}: must be between {low} and {high}", parameter=name, value=value)
    return value


def _uuid_param(name: str) -> str | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise bad_request(f"{name}: expected a run id (UUID)", parameter=name, value=raw[:100]) from None


def _conflict(exc: runs.RunInProgress) -> ApiError:
    return ApiError(409, "an ETL run is already going", running_run_id=exc.run_id)


def _unavailable(exc: SourceError) -> ApiError:
    return ApiError(503, str(exc), headers={"Retry-After": "30"}, source="mongodb")


# -- runs ---------------------------------------------------------------------------


@bp.route("/api/sync/reading", methods=["GET", "POST"])
@require_scope("ingest")
def sync_reading() -> Response:
    max_batches = _int_param("max_batches", -1, 0, MAX_BATCHES_PARAM)
    etl = _etl()
    try:
        result = etl.run("api", max_batches=None if max_batches < 0 else max_batches)
    except runs.RunInProgress as exc:
        raise _conflict(exc) from None
    except SourceError as exc:
        raise _unavailable(exc) from None
    return json_response(result.as_dict())


@bp.get("/api/sync/runs")
@require_scope("query")
def list_runs() -> Response:
    limit = _int_param("limit", 50, 1, 1000)
    status = request.args.get("status") or None
    if status is not None and status not in ("running", "succeeded", "failed"):
        raise bad_request("status: expected running, succeeded or failed", parameter="status")
    with state().connection() as conn:
        return json_response({"runs": etl_runs.list_runs(conn, limit=limit, status=status,
                                                             tenant=request_tenant())})


@bp.get("/api/sync/runs/<run_id>")
@require_scope("query")
def get_run(run_id: str) -> Response:
    try:
        ident = str(uuid.UUID(run_id))
    except ValueError:
        raise ApiError(404, "no such run", run_id=run_id[:100]) from None
    with state().connection() as conn:
        row = etl_runs.get_run(conn, ident, tenant=request_tenant())
    if row is None:
        raise ApiError(404, "no such run", run_id=ident)
    return json_response(row)


# -- rejects ------------------------------------------------------------------------


@bp.get("/api/sync/rejects")
@require_scope("query")
def list_rejects() -> Response:
    limit = _int_param("limit", 100, 1, 1000)
    include_closed = (request.args.get("all") or "").lower() in ("1", "true", "yes", "on")
    with state().connection() as conn:
        rows = etl_runs.list_rejects(conn, open_only=not include_closed, limit=limit,
                                     tenant=request_tenant())
    return json_response({"rejects": rows})


@bp.post("/api/sync/rejects/replay")
@require_scope("admin")
def replay_rejects() -> Response:
    body, _ = json_body(MAX_BODY)
    if not isinstance(body, dict):
        raise bad_request('expected a JSON object: {"ids": [1, 2]} or {"all": true}')
    unknown = sorted(set(body) - {"ids", "all"})
    if unknown:
        raise bad_request(f"unknown fields: {', '.join(unknown)}", fields=unknown)
    all_open = body.get("all", False)
    ids = body.get("ids")
    if not isinstance(all_open, bool):
        raise bad_request("all: expected true or false", field="all")
    if ids is not None and (
        not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise bad_request("ids: expected a list of reject ids (integers)", field="ids")
    if all_open == bool(ids):
        raise bad_request('name the rejects: {"ids": [1, 2]}, or {"all": true} (not both)')
    if ids and len(ids) > replay.MAX_REPLAY:
        raise bad_request(f"ids: at most {replay.MAX_REPLAY} per request", field="ids",
                          limit=replay.MAX_REPLAY)
    etl = _etl()
    asked = {"ids": ids, "all": all_open}
    try:
        result = etl.replay(ids, all_open=all_open)
    except replay.ReplayError as exc:
        _audit_replay("refused", asked, error=str(exc))
        raise bad_request(str(exc)) from None
    except runs.RunInProgress as exc:
        _audit_replay("refused", asked, error=str(exc))
        raise _conflict(exc) from None
    except SourceError as exc:
        _audit_replay("failed", asked, error=str(exc))
        raise _unavailable(exc) from None
    _audit_replay("ok", asked, run_id=result.run.run_id, loaded=result.run.loaded,
                  rejected=result.run.rejected)
    return json_response(result.as_dict())


def _audit_replay(outcome: str, asked: dict[str, Any], **details: Any) -> None:
    """Record a replay in the audit log, in a transaction of its own (the replay ran
    in the ETL's)."""
    with state().connection() as conn:
        audit.record(conn, actor(), "reject.replay", outcome=outcome, **asked, **details)


# -- readings -----------------------------------------------------------------------


@bp.get("/api/reading")
@require_scope("query")
def list_readings() -> Response:
    status = request.args.get("status") or "processed"
    order = request.args.get("order") or "asc"
    if status not in readings.STATUSES:
        raise bad_request(f"status: expected one of {', '.join(readings.STATUSES)}", parameter="status")
    if order not in readings.ORDERS:
        raise bad_request("order: expected asc or desc", parameter="order")
    start = parse_time(request.args["start"], "start") if request.args.get("start") else None
    end = parse_time(request.args["end"], "end") if request.args.get("end") else None
    if start and end and end <= start:
        raise bad_request("end must be after start", parameter="end")
    sources = tuple(s for s in request.args.getlist("source") if s)
    if any("\x00" in s for s in sources):
        raise bad_request("source: contains a NUL character", parameter="source")
    cursor = request.args.get("cursor")
    try:
        after = readings.decode_cursor(cursor, status, order) if cursor else None
    except readings.ReadingQueryError as exc:
        raise bad_request(str(exc), parameter=exc.parameter) from None
    query = readings.ReadingQuery(
        status=status, start=start, end=end, sources=sources, run_id=_uuid_param("run_id"),
        limit=_int_param("limit", 100, 1, readings.MAX_LIMIT), order=order, after=after,
    )
    with state().connection() as conn:
        items, next_cursor = readings.fetch(conn, query, tenant=request_tenant())
    return json_response({"readings": items, "next_cursor": next_cursor})


# -- OpenAPI --------------------------------------------------------------------------

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AUTH = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "429": {"$ref": "#/components/responses/TooMany"},
}
_RUN = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": ["succeeded", "failed"]},
        "trigger": {"type": "string"},
        "claimed": {"type": "integer"}, "loaded": {"type": "integer"},
        "rejected": {"type": "integer"}, "inserted": {"type": "integer"},
        "updated": {"type": "integer"}, "unchanged": {"type": "integer"},
        "samples": {"type": "integer"}, "batches": {"type": "integer"},
        "more": {"type": "boolean", "description": "Stopped at the batch limit; documents may wait"},
        "duration_s": {"type": "number"},
        "error": {"type": ["string", "null"]},
        "read_from": {"type": "string", "description": "hosts/database.collection read"},
        "warning": {"type": ["string", "null"],
                    "description": "e.g. the collection read is missing or empty"},
    },
}
_RUN_RESPONSES = {
    "200": {"description": "The run finished: its counts",
            "content": {"application/json": {"schema": _RUN}}},
    **_AUTH,
    "409": {"description": "Another run is going; running_run_id names it", **_ERR},
    "503": {"description": "MongoDB unreachable or the ETL not configured (the run is recorded as failed)",
            **_ERR},
}
_RUN_OP = {
    "tags": ["sync"], "x-scope": "ingest",
    "summary": "Run the MongoDB -> PostgreSQL ETL of readings now (scope ingest)",
    "parameters": [{"name": "max_batches", "in": "query", "required": False,
                    "description": "Batches to take (default ETL_MAX_BATCHES; 0: until the backlog is empty)",
                    "schema": {"type": "integer", "minimum": 0}}],
    "responses": _RUN_RESPONSES,
}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


OPENAPI: dict[str, Any] = {
    "/api/sync/reading": {
        "get": {**_RUN_OP, "operationId": "syncReadingGet"},
        "post": {**_RUN_OP, "operationId": "syncReading"},
    },
    "/api/sync/runs": {"get": {
        "tags": ["sync"], "operationId": "syncRuns", "x-scope": "query",
        "summary": "Recorded ETL runs, newest first (scope query)",
        "parameters": [_q("limit", "Most runs (1..1000, default 50)", {"type": "integer"}),
                       _q("status", "running, succeeded or failed")],
        "responses": {"200": {"description": "Runs", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"runs": {"type": "array", "items": {"type": "object"}}}}}}},
            **_AUTH, "503": {"$ref": "#/components/responses/Unavailable"}},
    }},
    "/api/sync/runs/{run_id}": {"get": {
        "tags": ["sync"], "operationId": "syncRun", "x-scope": "query",
        "summary": "One recorded ETL run (scope query)",
        "parameters": [{"name": "run_id", "in": "path", "required": True, "description": "Run id",
                        "schema": {"type": "string", "format": "uuid"}}],
        "responses": {"200": {"description": "The run", "content": {"application/json": {
            "schema": {"type": "object"}}}},
            **_AUTH, "404": {"description": "No such run", **_ERR},
            "503": {"$ref": "#/components/responses/Unavailable"}},
    }},
    "/api/sync/rejects": {"get": {
        "tags": ["sync"], "operationId": "syncRejects", "x-scope": "query",
        "summary": "Rejected documents with their reasons, newest first (scope query)",
        "parameters": [_q("all", "true: also rejects that went through since"),
                       _q("limit", "Most rejects (1..1000, default 100)", {"type": "integer"})],
        "responses": {"200": {"description": "Rejects", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"rejects": {"type": "array", "items": {"type": "object"}}}}}}},
            **_AUTH, "503": {"$ref": "#/components/responses/Unavailable"}},
    }},
    "/api/sync/rejects/replay": {"post": {
        "tags": ["sync"], "operationId": "syncReplay", "x-scope": "admin",
        "summary": "Send rejects through the ETL again, after fixing the cause (scope admin)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "ids": {"type": "array", "items": {"type": "integer"}},
                "all": {"type": "boolean"}}}}}},
        "responses": {"200": {"description": "The replay run and each reject's outcome",
                              "content": {"application/json": {"schema": {"type": "object", "properties": {
                                  "run": _RUN, "rejects": {"type": "array", "items": {"type": "object"}}}}}}},
                      **_AUTH,
                      "409": {"description": "Another run is going", **_ERR},
                      "503": {"description": "MongoDB unreachable or the ETL not configured", **_ERR}},
    }},
    "/api/reading": {"get": {
        "tags": ["readings"], "operationId": "readings", "x-scope": "query",
        "summary": "Readings loaded from MongoDB (or open rejects), with keyset pagination (scope query)",
        "parameters": [
            _q("start", "RFC 3339 or Unix seconds, inclusive (reading time; rejects: time rejected)"),
            _q("end", "RFC 3339 or Unix seconds, exclusive"),
            _q("source", "Source identity (repeat for several)"),
            _q("status", "processed (default) or rejected", {"type": "string", "enum": ["processed", "rejected"]}),
            _q("run_id", "Only what this run loaded or rejected"),
            _q("order", "asc (default) or desc by time", {"type": "string", "enum": ["asc", "desc"]}),
            _q("limit", "Items per page (1..1000, default 100)", {"type": "integer"}),
            _q("cursor", "next_cursor of the previous page"),
        ],
        "responses": {"200": {"description": "A page of readings", "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "readings": {"type": "array", "items": {"type": "object"}},
                "next_cursor": {"type": ["string", "null"]}}}}}},
            **_AUTH, "503": {"$ref": "#/components/responses/Unavailable"}},
    }},
}
