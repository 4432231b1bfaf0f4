"""An ETL run: one at a time, batch after batch, recorded in ``etl_runs``.

A run holds a PostgreSQL session advisory lock for its whole life, so a second
run, from any process or host sharing the database, fails at once with
:class:`RunInProgress` (HTTP 409) instead of waiting. Each batch:

1. claim up to ETL_BATCH_SIZE documents in MongoDB (``processing`` + lease);
2. transform them (bad ones become rejects);
3. in ONE PostgreSQL transaction: upsert the rows (and samples), write the
   rejects, add the batch's counts to the run's record;
4. only then mark the documents ``processed`` / ``rejected`` in MongoDB.

The next batch is claimed and transformed (by a worker thread) while the current
one loads. A crash between any two steps leaves documents ``processing`` (up to
two batches); once their lease has passed, the next run claims them again and the
upsert makes the repeat harmless: one row per document.

Every run is recorded: ``running`` while it goes, then ``succeeded`` or
``failed`` with its error. A ``running`` record found by a run that holds the
lock belongs to a process that died: it is closed as failed ("abandoned").
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from etl import load
from etl.settings import ClientFactory, EtlSettings
from etl.source import MongoSource, SourceError, scrub
from etl.transform import Transformer
from pgpulse.db import connect

log = logging.getLogger("etl.runs")

LOCK_NAME = "pgpulse_etl"  # the advisory lock key is hashtext() of this
TRIGGERS = ("api", "schedule", "cli", "replay")
ABANDONED = "abandoned: the process running it stopped before the run finished"

# Tests inject faults here: called with "claimed", "loaded" (after the PostgreSQL
# commit, before the MongoDB marks) and "marked" after each batch's step.
Checkpoint = Callable[[str], None]


class RunInProgress(RuntimeError):
    """Another run holds the ETL lock."""

    def __init__(self, run_id: str | None) -> None:
        super().__init__(f"an ETL run is already going (run {run_id or 'starting'})")
        self.run_id = run_id


@dataclasses.dataclass
class RunResult:
    run_id: str
    trigger: str
    status: str = "running"
    claimed: int = 0
    loaded: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    samples: int = 0
    batches: int = 0
    more: bool = False  # stopped at the batch limit with documents left
    error: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    duration_s: float = 0.0
    # Seconds spent reading (claims and marks in MongoDB), transforming, loading.
    timings: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"read": 0.0, "transform": 0.0, "load": 0.0, "mark": 0.0}
    )
    backlog: int | None = None  # documents claimable at the start (when asked for)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "trigger": self.trigger,
            "claimed": self.claimed,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "samples": self.samples,
            "batches": self.batches,
            "more": self.more,
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
        }


Progress = Callable[[RunResult], None]


def _describe(exc: BaseException, settings: EtlSettings) -> str:
    if isinstance(exc, SourceError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    first = (str(exc).strip().splitlines() or [""])[0]
    return scrub(f"{type(exc).__name__}: {first}"[:1000], settings.mongo_uri)


def _db_now(conn: psycopg.Connection) -> datetime:
    # One clock for leases: every process sharing the database agrees on it.
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def _try_lock(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_NAME,)).fetchone()[0]


def running_run(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT id FROM etl_runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None


def _record_failure(url: str, conn: psycopg.Connection, result: RunResult) -> None:
    """Close the run record as failed, on a new connection if the run's broke."""
    sql = (
        "UPDATE etl_runs SET status = 'failed', finished_at = now(), error = %s "
        "WHERE id = %s AND status = 'running'"
    )
    try:
        if conn.broken or conn.closed:
            with connect(url, autocommit=True) as other:
                other.execute(sql, (result.error, result.run_id))
        else:
            conn.execute(sql, (result.error, result.run_id))
    except psycopg.OperationalError as exc:
        # The database is gone: the next run that gets the lock closes this record
        # as abandoned. The run's own error is what the caller must see.
        log.warning("could not record the failure of run %s: %s", result.run_id, str(exc).strip())


def run(
    url: str,
    settings: EtlSettings,
    *,
    trigger: str = "cli",
    source: MongoSource | None = None,
    client_factory: ClientFactory | None = None,
    max_batches: int | None = None,
    keys: Sequence[Any] | None = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> RunResult:
    """Run the ETL once; returns its result (raises RunInProgress, SourceError, ...).

    ``max_batches``: None takes ETL_MAX_BATCHES, 0 means until the backlog is empty.
    ``keys``: a replay of these rejected documents' _id values instead of the backlog.
    ``source``: a MongoSource to reuse (the proxy keeps one); else one is made from
    ``client_factory`` and closed at the end.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    own_source = source is None
    if source is None:
        source = MongoSource(settings, client_factory)
    limit = settings.max_batches if max_batches is None else max_batches
    result = RunResult(str(uuid.uuid4()), trigger)
    try:
        with connect(url, autocommit=True, application_name="pgpulse-etl") as conn:
            if not _try_lock(conn):
                raise RunInProgress(running_run(conn))
            try:
                # Under the lock no other run is going: a 'running' record is left over
                # from a process that died.
                conn.execute(
                    "UPDATE etl_runs SET status = 'failed', finished_at = now(), error = %s "
                    "WHERE status = 'running'",
                    (ABANDONED,),
                )
                conn.execute(
                    "INSERT INTO etl_runs (id, trigger, status) VALUES (%s, %s, 'running')",
                    (result.run_id, trigger),
                )
                log.info("ETL run %s started (%s) from %s", result.run_id, trigger, source.where)
                try:
                    _batches(conn, source, settings, result, limit, keys, progress, checkpoint)
                except (Exception, KeyboardInterrupt) as exc:
                    result.status, result.error = "failed", _describe(exc, settings)
                    result.duration_s = time.monotonic() - result.started
                    _record_failure(url, conn, result)
                    log.warning("ETL run %s failed: %s", result.run_id, result.error)
                    raise
                result.status = "succeeded"
                result.duration_s = time.monotonic() - result.started
                conn.execute(
                    "UPDATE etl_runs SET status = 'succeeded', finished_at = now() WHERE id = %s",
                    (result.run_id,),
                )
                log.info(
                    "ETL run %s done: %d claimed, %d loaded, %d rejected in %.1f s",
                    result.run_id, result.claimed, result.loaded, result.rejected, result.duration_s,
                )
            finally:
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_NAME,))
    finally:
        if own_source:
            source.close()
    return result


@dataclasses.dataclass
class _Claimed:
    now: datetime
    documents: list[dict]
    batch: Future  # Future[Batch], transformed by the worker thread


def _batches(
    conn: psycopg.Connection,
    source: MongoSource,
    settings: EtlSettings,
    result: RunResult,
    limit: int,
    keys: Sequence[Any] | None,
    progress: Progress | None,
    checkpoint: Checkpoint | None,
) -> None:
    transformer = Transformer(settings)
    load.prepare(conn)
    if progress is not None and keys is None:
        result.backlog = source.backlog(_db_now(conn))
        progress(result)
    timings = result.timings
    size = settings.batch_size
    lease = timedelta(seconds=settings.lease_s)

    def transform(documents: list[dict]) -> Any:
        t0 = time.perf_counter()
        batch = transformer.batch(documents)
        timings["transform"] += time.perf_counter() - t0  # only the worker adds to it
        return batch

    # Batch N+1 is claimed before batch N loads, and transformed by a worker thread
    # while PostgreSQL loads batch N: on two cores the Python work and the server's
    # overlap. Claims, loads and marks stay in this thread, in order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="etl-transform") as worker:

        def claim() -> _Claimed | None:
            now = _db_now(conn)
            t0 = time.perf_counter()
            documents = source.claim(result.run_id, now, now + lease, size, keys)
            timings["read"] += time.perf_counter() - t0
            if not documents:
                return None
            if checkpoint:
                checkpoint("claimed")
            return _Claimed(now, documents, worker.submit(transform, documents))

        current = claim()
        while current is not None:
            batch = current.batch.result()
            # A next batch exists only if this one was full (else the backlog is
            # empty) and the batch limit allows one more.
            full = len(current.documents) == size
            allowed = limit == 0 or result.batches + 1 < limit
            following = claim() if full and allowed else None
            t0 = time.perf_counter()
            with conn.transaction():
                written = load.write(conn, batch, result.run_id)
                conn.execute(
                    "UPDATE etl_runs SET claimed = claimed + %s, loaded = loaded + %s, "
                    "rejected = rejected + %s WHERE id = %s",
                    (len(current.documents), written.loaded, written.rejects, result.run_id),
                )
            t1 = time.perf_counter()
            timings["load"] += t1 - t0
            if checkpoint:
                checkpoint("loaded")
            source.mark_processed(result.run_id, [row.key for row in batch.rows], current.now)
            source.mark_rejected(result.run_id, [(r.key, r.reason) for r in batch.rejects], current.now)
            timings["mark"] += time.perf_counter() - t1
            if checkpoint:
                checkpoint("marked")
            result.batches += 1
            result.claimed += len(current.documents)
            result.loaded += written.loaded
            result.rejected += written.rejects
            result.inserted += written.inserted
            result.updated += written.updated
            result.unchanged += written.unchanged
            result.samples += written.samples
            result.duration_s = time.monotonic() - result.started
            if progress is not None:
                progress(result)
            # Stopped at the batch limit after a full batch: documents may be waiting.
            result.more = full and not allowed
            current = following


# -- the record ------------------------------------------------------------------------

RUN_COLUMNS = ("id", "status", "trigger", "started_at", "finished_at", "claimed", "loaded",
               "rejected", "error")
_RUN_SELECT = sql.SQL(", ").join(map(sql.Identifier, RUN_COLUMNS))


def _run_row(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(RUN_COLUMNS, row, strict=True))
    out["id"] = str(out["id"])
    finished = out["finished_at"]
    out["duration_s"] = round((finished - out["started_at"]).total_seconds(), 3) if finished else None
    return out


def list_runs(conn: psycopg.Connection, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
    """The most recent runs, newest first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM etl_runs WHERE %(status)s::text IS NULL OR status = %(status)s "
            "ORDER BY started_at DESC, id LIMIT %(limit)s"
        ).format(_RUN_SELECT),
        {"status": status, "limit": limit},
    ).fetchall()
    return [_run_row(r) for r in rows]


def get_run(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        sql.SQL("SELECT {} FROM etl_runs WHERE id = %s").format(_RUN_SELECT),
        (run_id,),
    ).fetchone()
    return _run_row(row) if row else None
