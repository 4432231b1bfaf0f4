"""Ingest: POST /api/ingest (alias /v1/ingest) and POST /api/ingest/snapshots.

HTTP only: the body is parsed and checked here (:mod:`proxy.validation`), the
writes are the store's (series and samples, snapshots, idempotency records), and
the store's refusals become statuses in ``proxy.errors``. A batch is one
transaction: series resolution or creation, the binary COPY of its samples and the
idempotency record commit together or not at all.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, g, request

from pgpulse.store import idempotency, samples, snapshots
from pgpulse.store.batch import PG_EPOCH_US, Batch
from pgpulse.store.errors import CardinalityExceeded, InvalidSample, TypeConflict
from pgpulse.store.series import SeriesCache, SeriesLimits
from proxy import metrics, quota
from proxy.api.openapi import (
    AUTH_ERRORS,
    IDEMPOTENCY_KEY,
    errors,
    json_ok,
    param,
)
from proxy.auth import request_tenant, require_scope
from proxy.body import json_body, parse_json, raw_body
from proxy.errors import ApiError, bad_request, json_response
from proxy.ratelimit import charge_samples
from proxy.state import state
from proxy.validation import Limits, decode_typed, validate

log = logging.getLogger("proxy.ingest")
bp = Blueprint("ingest", __name__)

MAX_IDEMPOTENCY_KEY = 200
_gc_pause = threading.Lock()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while one batch is parsed and validated.

    A batch of 5,000 samples allocates some 30,000 dicts and tuples; each burst of
    allocations triggers collections that scan them again and again, which costs a
    third to a half of parse and validation (docs/performance.md, measured with
    ``bench/bench_ingest.py --parse``). None of these objects form cycles, so
    reference counting frees them anyway.

    The collector is process-wide, so the pause is kept as short as it can be: one
    request at a time holds it, only for its own parse and validation (milliseconds,
    bounded by PROXY_MAX_SAMPLES_PER_REQUEST), and a request that finds a pause in
    progress does not pause or extend it. Overlapping requests therefore cannot chain
    pauses into a long one, and other threads of the worker see cycle collection
    delayed by at most one batch's parse; an error inside ends the pause too.
    """
    if not _gc_pause.acquire(blocking=False):
        yield
        return
    paused = gc.isenabled()
    try:
        if paused:
            gc.disable()
        yield
    finally:
        if paused:
            gc.enable()
        _gc_pause.release()


def _cache() -> SeriesCache:
    return state().series_cache


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise bad_request(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                          field="Idempotency-Key")
    # Keys are per API key and tenant: two clients (or one admin key writing for two
    # tenants) cannot collide on the same text.
    return f"{g.get('api_key_id') or '-'}:{request_tenant()}:{key}"


def _items(doc: object, field: str, limit: int) -> list:
    if type(doc) is not dict:
        raise bad_request(f"body must be a JSON object with a {field!r} array", field=field)
    items = doc.get(field)
    if type(items) is not list:
        raise bad_request(f"{field!r} must be an array", field=field)
    if len(items) > limit:
        metrics.SAMPLES_REJECTED.labels("too_many_samples").inc(len(items))
        raise ApiError(413, f"{len(items)} items in one request; the limit is {limit}",
                       field=field, count=len(items), limit=limit)
    return items


_REJECTED = {CardinalityExceeded: "cardinality", TypeConflict: "type_conflict"}


def _checked(raw: bytes, limits: Limits, now_us: int, max_samples: int) -> Batch:
    """The batch of a body the typed path did not take: parsed and validated sample by
    sample (:func:`proxy.validation.validate`), raising the error of what is wrong."""
    items: list = []
    try:
        with gc_paused():
            items = _items(parse_json(raw), "metrics", max_samples)
            return validate(items, limits, now_us)
    except InvalidSample as exc:
        metrics.SAMPLES_REJECTED.labels(exc.details["reason"]).inc(len(items))
        raise


@bp.post("/api/ingest")
@bp.post("/v1/ingest")
@require_scope("ingest")
def ingest() -> Response:
    st = state()
    settings = st.settings
    series_limits = SeriesLimits.from_settings(st.core)
    idem = _idempotency_key()
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    limits = Limits(series_limits, settings.max_past_s, settings.max_future_s)
    raw = raw_body(settings.max_body_bytes)
    # The typed path takes a batch that keeps every rule; any other body goes through
    # the reference parse and validation, which names what is wrong.
    batch = decode_typed(raw, limits, now_us, settings.max_samples)
    if batch is None:
        batch = _checked(raw, limits, now_us, settings.max_samples)
    count = len(batch.rows)
    charge_samples(count)
    digest = hashlib.sha256(raw).hexdigest() if idem else ""
    cache = _cache()
    try:
        with st.connection() as conn:
            if idem:
                replayed = idempotency.replay(conn, idem, digest, settings.idempotency_ttl_s)
                if replayed is not None:
                    status, stored = replayed
                    return json_response(stored, status, headers={"Idempotent-Replayed": "true"})
            written, learned = samples.write_batch(conn, batch, series_limits, cache,
                                                   tenant=request_tenant())
            quota.charge(conn, written)
            body = {"accepted": written, "series": len(batch.keys)}
            if idem:
                idempotency.remember(conn, idem, digest, 200, body, settings.idempotency_ttl_s)
    except (CardinalityExceeded, TypeConflict) as exc:
        metrics.SAMPLES_REJECTED.labels(_REJECTED[type(exc)]).inc(count)
        raise
    cache.update(learned)
    metrics.SAMPLES_INGESTED.inc(written)
    return json_response(body)


@bp.post("/api/ingest/snapshots")
@require_scope("ingest")
def ingest_snapshots() -> Response:
    st = state()
    doc, _raw = json_body(st.settings.max_body_bytes)
    items = _items(doc, "snapshots", st.settings.max_samples)
    charge_samples(len(items))
    window = snapshots.Window(st.core.raw_retention_days * 86400, st.settings.max_future_s)
    inserted = 0
    if items:
        with st.connection() as conn:
            inserted = snapshots.write(conn, items, window, tenant=request_tenant())
            quota.charge(conn, inserted)
    metrics.SNAPSHOTS_INGESTED.inc(inserted)
    return json_response({"accepted": len(items), "inserted": inserted,
                          "duplicates": len(items) - inserted})


_SAMPLE = {
    "type": "object",
    "required": ["name", "value"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$", "maxLength": 200},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "value": {"type": "number"},
        "timestamp": {"oneOf": [{"type": "number", "description": "Unix seconds"},
                                {"type": "string", "format": "date-time"}]},
        "type": {"type": "string", "enum": ["gauge", "counter"]},
    },
}
_INGEST = {
    "tags": ["ingest"],
    "summary": "Write a batch of samples (atomic; gzip accepted; scope ingest)",
    "x-scope": "ingest",
    "parameters": [
        IDEMPOTENCY_KEY,
        param("Content-Encoding", "gzip or absent", where="header",
              schema={"type": "string", "enum": ["gzip", "identity"]}),
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["metrics"],
        "properties": {"metrics": {"type": "array", "items": _SAMPLE}}}}}},
    "responses": {
        **json_ok("Written", {"type": "object", "properties": {
            "accepted": {"type": "integer"}, "series": {"type": "integer"}}}),
        "409": {"description": "Type differs from the series' type, or Idempotency-Key reused",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "415": {"description": "Unsupported Content-Encoding",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        **errors(*AUTH_ERRORS, 413),
    },
}
OPENAPI = {
    "/api/ingest": {"post": {**_INGEST, "operationId": "ingest"}},
    "/v1/ingest": {"post": {**_INGEST, "operationId": "ingestV1", "summary": "Alias of /api/ingest"}},
    "/api/ingest/snapshots": {"post": {
        "tags": ["ingest"], "operationId": "ingestSnapshots", "x-scope": "ingest",
        "summary": "Write host snapshots (idempotent on host and time; scope ingest)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["snapshots"],
            "properties": {"snapshots": {"type": "array", "items": {
                "type": "object", "required": ["host", "time", "data"],
                "properties": {"host": {"type": "string"},
                               "time": {"type": "string", "format": "date-time"},
                               "data": {"type": "object"}}}}}}}}},
        "responses": {**json_ok("Stored (duplicates are no-ops)", {"type": "object", "properties": {
            "accepted": {"type": "integer"}, "inserted": {"type": "integer"},
            "duplicates": {"type": "integer"}}}),
            "415": {"description": "Unsupported Content-Encoding", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            **errors(*AUTH_ERRORS, 413)},
    }},
}
