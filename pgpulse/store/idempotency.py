"""``ingest_idempotency``: the answers of batches sent with an Idempotency-Key.

A retried batch with the same key and body gets the first answer again; the same
key with another body is an :class:`IdempotencyConflict`. :func:`replay` takes a
transaction-scoped advisory lock on the key, so concurrent retries of one key wait
for the first to commit. Keys older than the TTL are forgotten, swept at most once
a minute per process.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import orjson
import psycopg

from pgpulse.store.errors import IdempotencyConflict

SWEEP_EVERY_S = 60.0
_sweep_lock = threading.Lock()
_last_sweep = -SWEEP_EVERY_S


def replay(conn: psycopg.Connection, key: str, digest: str, ttl_s: int) -> tuple[int, Any] | None:
    """(status, body) stored for ``key`` within ``ttl_s``, or None (then the caller
    writes the batch and :func:`remember` its answer in the same transaction).

    Raises IdempotencyConflict when the key came with a body of another ``digest``.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
    row = conn.execute(
        "SELECT request_hash, status, response FROM ingest_idempotency "
        "WHERE key = %s AND created_at > now() - %s",
        (key, timedelta(seconds=ttl_s)),
    ).fetchone()
    if row is None:
        return None
    if row[0] != digest:
        raise IdempotencyConflict("Idempotency-Key already used with a different request body",
                                  field="Idempotency-Key")
    return row[1], row[2]


def remember(conn: psycopg.Connection, key: str, digest: str, status: int, body: Any,
             ttl_s: int) -> None:
    """Store the answer of ``key``; now and then, forget keys older than ``ttl_s``."""
    conn.execute(
        "INSERT INTO ingest_idempotency (key, request_hash, status, response) "
        "VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
        "status = EXCLUDED.status, response = EXCLUDED.response, created_at = now()",
        (key, digest, status, orjson.dumps(body).decode()),
    )
    global _last_sweep
    now = time.monotonic()
    with _sweep_lock:
        due = now - _last_sweep > SWEEP_EVERY_S
        if due:
            _last_sweep = now
    if due:
        sweep(conn, ttl_s)


def sweep(conn: psycopg.Connection, ttl_s: int) -> int:
    """Forget keys older than ``ttl_s``; returns how many."""
    return conn.execute(
        "DELETE FROM ingest_idempotency WHERE created_at < now() - %s", (timedelta(seconds=ttl_s),)
    ).rowcount
