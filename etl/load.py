"""One transformed batch into PostgreSQL, inside the caller's transaction.

The readings and the rejects are written by the store, their one writer
(:mod:`pgpulse.store.readings`, :mod:`pgpulse.store.etl_runs`): loading a document
twice (a run repeated after a crash) leaves one row, and a row is rewritten only
when the document changed.

With ETL_SERIES, the samples go through the store too (:mod:`etl.samples`): their
series are checked and resolved under the store's rules and limits before the
upsert (a document the store refuses becomes a reject), and samples are written
only for readings this transaction *inserted*: a reading loaded again never
doubles its samples.
"""

from __future__ import annotations

import dataclasses

import psycopg

from etl import samples as etl_samples
from etl.transform import Batch
from pgpulse.settings import load_core
from pgpulse.store import etl_runs, readings
from pgpulse.store.series import SeriesLimits


@dataclasses.dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    samples: int = 0
    rejects: int = 0

    @property
    def loaded(self) -> int:
        """Documents now in reading_analytics (new, changed, or already there)."""
        return self.inserted + self.updated + self.unchanged


def prepare(conn: psycopg.Connection) -> None:
    """Create this session's staging tables (once per connection)."""
    readings.prepare(conn)


def write(
    conn: psycopg.Connection, batch: Batch, run_id: str, limits: SeriesLimits | None = None
) -> LoadResult:
    """Write ``batch``'s rows, samples and rejects; the caller commits.

    Open rejects of documents that now loaded are closed (``replayed_at``): their
    cause was fixed and they went through. ``limits``: the series limits of the
    samples (None: those of the core settings in the environment). Documents whose
    samples the store refuses move from ``batch.rows`` to ``batch.rejects``.
    """
    result = LoadResult()
    admitted = None
    if batch.samples:
        admitted = etl_samples.admit(conn, batch, limits or SeriesLimits.from_settings(load_core()))
    if batch.rows:
        upserted = readings.upsert(
            conn,
            ((r.mongo_id, r.reading_time, r.source_id, r.payload.decode()) for r in batch.rows),
            run_id,
            inserted_ids=admitted is not None,
        )
        result.inserted, result.updated, result.unchanged = (
            upserted.inserted, upserted.updated, upserted.unchanged)
        if admitted is not None:
            result.samples = etl_samples.write(conn, admitted, upserted.inserted_ids)
        etl_runs.close_rejects(conn, [row.mongo_id for row in batch.rows])
    if batch.rejects:
        etl_runs.write_rejects(
            conn, run_id,
            ((r.mongo_id, r.reason, r.document.decode(), r.source_id) for r in batch.rejects),
        )
        result.rejects = len(batch.rejects)
    return result
