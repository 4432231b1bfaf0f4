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

Every run is recorded (by :mod:`pgpulse.store.etl_runs`): ``running`` while it
goes, then ``succeeded`` or ``failed`` with its error, and where it read from. A
``running`` record found by a run that holds the lock belongs to a process that
died: it is closed as failed ("abandoned"). A run that finds nothing because the
collection is missing or empty says so, naming the database and collection, in its
record (``warning``), its log line and its answer.
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

from etl import load
from etl.settings import EtlSettings
from etl.source import Source, SourceError, scrub
from etl.transform import Transformer
from pgpulse.db import connect
from pgpulse.store import etl_runs
from pgpulse.store.etl_runs import ABANDONED, LOCK_NAME
from pgpulse.store.series import SeriesLimits

log = logging.getLogger("etl.runs")

TRIGGERS = ("api", "schedule", "cli", "replay")
__all__ = ["ABANDONED", "LOCK_NAME", "TRIGGERS", "RunInProgress", "RunResult", "run"]


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
    read_from: str = ""  # hosts/database.collection
    warning: str | None = None  # e.g. the collection is missing or empty
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
            "read_from": self.read_from,
            "warning": self.warning,
        }


Progress = Callable[[RunResult], None]


def _describe(exc: BaseException, settings: EtlSettings) -> str:
    if isinstance(exc, SourceError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    first = (str(exc).strip().splitlines() or [""])[0]
    return scrub(f"{type(exc).__name__}: {first}"[:1000], settings.mongo_uri)


def _record_failure(url: str, conn: psycopg.Connection, result: RunResult) -> None:
    """Close the run record as failed, on a new connection if the run's broke."""
    try:
        if conn.broken or conn.closed:
            with connect(url, autocommit=True) as other:
                etl_runs.fail(other, result.run_id, result.error)
        else:
            etl_runs.fail(conn, result.run_id, result.error)
    except psycopg.OperationalError as exc:
        # The database is gone: the next run that gets the lock closes this record
        # as abandoned. The run's own error is what the caller must see.
        log.warning("could not record the failure of run %s: %s", result.run_id, str(exc).strip())


def run(
    url: str,
    settings: EtlSettings,
    source: Source,
    *,
    trigger: str = "cli",
    max_batches: int | None = None,
    keys: Sequence[Any] | None = None,
    progress: Progress | None = None,
    limits: SeriesLimits | None = None,
) -> RunResult:
    """Run the ETL once from ``source``; returns its result (raises RunInProgress,
    SourceError, ...). The caller owns ``source`` (and closes it).

    ``max_batches``: None takes ETL_MAX_BATCHES, 0 means until the backlog is empty.
    ``keys``: a replay of these rejected documents' _id values instead of the backlog.
    """
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    limit = settings.max_batches if max_batches is None else max_batches
    result = RunResult(str(uuid.uuid4()), trigger, read_from=source.where)
    with connect(url, autocommit=True, application_name="pgpulse-etl") as conn:
        if not etl_runs.try_lock(conn):
            raise RunInProgress(etl_runs.running_run(conn))
        try:
            # Under the lock no other run is going: a 'running' record is left over
            # from a process that died.
            etl_runs.close_abandoned(conn)
            etl_runs.start(conn, result.run_id, trigger, result.read_from)
            log.info("ETL run %s started (%s) from %s", result.run_id, trigger, result.read_from)
            try:
                _batches(conn, source, settings, result, limit, keys, progress, limits)
                if result.claimed == 0 and keys is None:
                    result.warning = source.why_empty()
            except (Exception, KeyboardInterrupt) as exc:
                result.status, result.error = "failed", _describe(exc, settings)
                result.duration_s = time.monotonic() - result.started
                _record_failure(url, conn, result)
                log.warning("ETL run %s failed: %s", result.run_id, result.error)
                raise
            result.status = "succeeded"
            result.duration_s = time.monotonic() - result.started
            etl_runs.succeed(conn, result.run_id, result.warning)
            if result.warning:
                log.warning("ETL run %s read nothing: %s", result.run_id, result.warning)
            log.info(
                "ETL run %s done: %d claimed, %d loaded, %d rejected in %.1f s",
                result.run_id, result.claimed, result.loaded, result.rejected, result.duration_s,
            )
        finally:
            if not conn.broken:
                etl_runs.unlock(conn)
    return result


@dataclasses.dataclass
class _Claimed:
    now: datetime
    documents: list[dict]
    batch: Future  # Future[Batch], transformed by the worker thread


def _batches(
    conn: psycopg.Connection,
    source: Source,
    settings: EtlSettings,
    result: RunResult,
    limit: int,
    keys: Sequence[Any] | None,
    progress: Progress | None,
    limits: SeriesLimits | None,
) -> None:
    transformer = Transformer(settings)
    load.prepare(conn)
    if progress is not None and keys is None:
        result.backlog = source.backlog(etl_runs.clock(conn))
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
            now = etl_runs.clock(conn)
            t0 = time.perf_counter()
            documents = source.claim(result.run_id, now, now + lease, size, keys)
            timings["read"] += time.perf_counter() - t0
            if not documents:
                return None
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
                written = load.write(conn, batch, result.run_id, limits)
                etl_runs.add_batch(conn, result.run_id, len(current.documents), written.loaded,
                                   written.rejects)
            t1 = time.perf_counter()
            timings["load"] += t1 - t0
            source.mark_processed(result.run_id, [row.key for row in batch.rows], current.now)
            source.mark_rejected(result.run_id, [(r.key, r.reason) for r in batch.rejects], current.now)
            timings["mark"] += time.perf_counter() - t1
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
