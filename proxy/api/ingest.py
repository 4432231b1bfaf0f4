"""Ingest: POST /api/ingest (alias /v1/ingest) and POST /api/ingest/snapshots.

A batch is one transaction: series resolution or creation, the binary COPY of its
samples and the idempotency record commit together or not at all.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
from flask import Blueprint, Response, g, request

from proxy import metrics
from proxy.api.openapi import (
    AUTH_ERRORS,
    IDEMPOTENCY_KEY,
    errors,
    json_ok,
    param,
)
from proxy.auth import require_scope
from proxy.body import json_body
from proxy.catalogue import SeriesCache, resolve, write_samples
from proxy.errors import ApiError, bad_request, json_response
from proxy.state import state
from proxy.timeparse import PG_EPOCH_S, parse_rfc3339
from proxy.validation import InvalidBatch, validate

log = logging.getLogger("proxy.ingest")
bp = Blueprint("ingest", __name__)

MAX_IDEMPOTENCY_KEY = 200
MAX_HOST_LENGTH = 255


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is parsed and validated.

    A batch of 5,000 samples allocates some 10,000 dicts and tuples; each allocation
    burst triggers collections that scan them again and again, which doubles the cost
    of parsing. None of these objects form cycles, so reference counting frees them
    anyway. Threads of one worker share the collector: it resumes when the last
    batch in progress is done.
    """
    global _gc_pausers
    with _gc_lock:
        _gc_pausers += 1
        if _gc_pausers == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0:
                gc.enable()


def _cache() -> SeriesCache:
    extras = state().extras
    cache = extras.get("series_cache")
    if cache is None:
        cache = extras.setdefault("series_cache", SeriesCache())
    return cache  # type: ignore[return-value]


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise bad_request(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                          field="Idempotency-Key")
    # Keys are per API key: two clients cannot collide on the same text.
    return f"{g.get('api_key_id') or '-'}:{key}"


def _replay(conn, key: str, digest: str, ttl: int) -> Response | None:
    """The stored answer for a retried batch (409 when the key came with another body)."""
    # Concurrent retries of one key wait here for the first to finish.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
    row = conn.execute(
        "SELECT request_hash, status, response FROM ingest_idempotency "
        "WHERE key = %s AND created_at > now() - %s",
        (key, timedelta(seconds=ttl)),
    ).fetchone()
    if row is None:
        return None
    if row[0] != digest:
        raise ApiError(409, "Idempotency-Key already used with a different request body",
                       field="Idempotency-Key")
    return json_response(row[2], row[1], headers={"Idempotent-Replayed": "true"})


def _remember(conn, key: str, digest: str, status: int, body: dict) -> None:
    conn.execute(
        "INSERT INTO ingest_idempotency (key, request_hash, status, response) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
        "status = EXCLUDED.status, response = EXCLUDED.response, created_at = now()",
        (key, digest, status, orjson.dumps(body).decode()),
    )
    # Forget expired keys now and then (at most once a minute per process).
    extras = state().extras
    now = time.monotonic()
    if now - extras.get("idempotency_swept", 0.0) > 60:  # type: ignore[operator]
        extras["idempotency_swept"] = now
        conn.execute("DELETE FROM ingest_idempotency WHERE created_at < now() - %s",
                     (timedelta(seconds=state().settings.idempotency_ttl_s),))


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


@bp.post("/api/ingest")
@bp.post("/v1/ingest")
@require_scope("ingest")
def ingest() -> Response:
    st = state()
    settings = st.settings
    idem = _idempotency_key()
    now_us = time.time_ns() // 1000 - PG_EPOCH_S * 1_000_000
    try:
        with gc_paused():
            doc, raw = json_body(settings.max_body_bytes)
            items = _items(doc, "metrics", settings.max_samples)
            batch = validate(items, settings, now_us)
    except InvalidBatch as exc:
        metrics.SAMPLES_REJECTED.labels(exc.reason).inc(len(items))
        field = f"metrics[{exc.index}]" + (f".{exc.field}" if exc.field else "")
        raise bad_request(f"{field}: {exc.message}", index=exc.index, field=exc.field or None,
                          reason=exc.reason, invalid_count=exc.invalid, total=len(items)) from None
    digest = hashlib.sha256(raw).hexdigest() if idem else ""
    cache = _cache()
    try:
        with st.connection() as conn:
            if idem:
                replayed = _replay(conn, idem, digest, settings.idempotency_ttl_s)
                if replayed is not None:
                    return replayed
            ids, learned = resolve(conn, batch, cache, settings)
            written = write_samples(conn, batch, ids)
            body = {"accepted": written, "series": len(batch.keys)}
            if idem:
                _remember(conn, idem, digest, 200, body)
    except ApiError as exc:
        reason = {429: "cardinality", 409: "type_conflict"}.get(exc.status)
        if reason:
            metrics.SAMPLES_REJECTED.labels(reason).inc(len(items))
        raise
    cache.update(learned)
    metrics.SAMPLES_INGESTED.inc(written)
    return json_response(body)


def _snapshot_rows(items: list, max_past_s: int, max_future_s: int) -> tuple[list, list, list]:
    times: list[datetime] = []
    hosts: list[str] = []
    docs: list[str] = []
    now = datetime.now(UTC)
    lo, hi = now - timedelta(seconds=max_past_s), now + timedelta(seconds=max_future_s)
    first = None
    invalid = 0
    for i, s in enumerate(items):
        problem = None
        if type(s) is not dict:
            problem = ("", "snapshot must be a JSON object")
        else:
            host, t, data = s.get("host"), s.get("time"), s.get("data")
            extra = set(s) - {"host", "time", "data"}
            if extra:
                problem = (sorted(extra)[0], f"unknown field {sorted(extra)[0]!r}")
            elif type(host) is not str or not host.strip() or len(host) > MAX_HOST_LENGTH or "\x00" in host:
                problem = ("host", f"host must be a non-empty string of at most {MAX_HOST_LENGTH} characters")
            elif type(data) is not dict:
                problem = ("data", "data must be a JSON object")
            else:
                when = None
                if type(t) is str:
                    when = parse_rfc3339(t)
                elif type(t) in (int, float) and math.isfinite(t) and 0 <= t < 1e11:
                    when = datetime.fromtimestamp(t, UTC)
                if when is None:
                    problem = ("time", "time must be RFC 3339 text (or Unix seconds)")
                elif not lo <= when <= hi:
                    problem = ("time", f"time outside the accepted window (now - {max_past_s}s .. now + {max_future_s}s)")
                else:
                    try:
                        text = orjson.dumps(data).decode()
                    except orjson.JSONEncodeError:  # orjson writes at most 254 levels
                        text = None
                    if text is None:
                        problem = ("data", "data is nested deeper than 254 levels")
                    # PostgreSQL's jsonb cannot hold NUL characters.
                    elif "\\u0000" in text:
                        problem = ("data", "data contains a NUL character")
                    else:
                        times.append(when)
                        hosts.append(host)
                        docs.append(text)
        if problem:
            invalid += 1
            if first is None:
                first = (i, *problem)
    if first is not None:
        i, fld, msg = first
        where = f"snapshots[{i}]" + (f".{fld}" if fld else "")
        raise bad_request(f"{where}: {msg}", index=i, field=fld or None, invalid_count=invalid,
                          total=len(items))
    return times, hosts, docs


@bp.post("/api/ingest/snapshots")
@require_scope("ingest")
def ingest_snapshots() -> Response:
    st = state()
    doc, _raw = json_body(st.settings.max_body_bytes)
    items = _items(doc, "snapshots", st.settings.max_samples)
    times, hosts, docs = _snapshot_rows(
        items, st.core.raw_retention_days * 86400, st.settings.max_future_s
    )
    inserted = 0
    if items:
        with st.connection() as conn:
            # Set-based and idempotent on (host, time): a replayed snapshot is a no-op.
            cur = conn.execute(
                "INSERT INTO system_metrics (time, host, data) "
                "SELECT t, h, d::jsonb FROM unnest(%s::timestamptz[], %s::text[], %s::text[]) AS u(t, h, d) "
                "ON CONFLICT (host, time) DO NOTHING",
                (times, hosts, docs),
            )
            inserted = cur.rowcount
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
        **errors(*AUTH_ERRORS, 413, 429),
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
