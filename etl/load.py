"""One transformed batch into PostgreSQL, inside the caller's transaction.

The readings and the rejects are written by the store, their one writer
(:mod:`pgpulse.store.readings`, :mod:`pgpulse.store.etl_runs`). With ETL_SERIES,
the samples derived from the readings are written by :func:`write_samples`, and
only for readings this transaction *inserted*: a reading loaded again never
doubles its samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import psycopg

from etl.transform import Batch, Sample
from pgpulse.store import etl_runs, readings


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
    prepare_samples(conn)


def write(conn: psycopg.Connection, batch: Batch, run_id: str) -> LoadResult:
    """Write ``batch``'s rows, samples and rejects; the caller commits.

    Open rejects of documents that now loaded are closed (``replayed_at``): their
    cause was fixed and they went through.
    """
    result = LoadResult()
    if batch.rows:
        upserted = readings.upsert(
            conn,
            ((r.mongo_id, r.reading_time, r.source_id, r.payload.decode()) for r in batch.rows),
            run_id,
            inserted_ids=bool(batch.samples),
        )
        result.inserted, result.updated, result.unchanged = (
            upserted.inserted, upserted.updated, upserted.unchanged)
        if batch.samples:
            result.samples = write_samples(conn, batch.samples, upserted.inserted_ids)
        etl_runs.close_rejects(conn, [row.mongo_id for row in batch.rows])
    if batch.rejects:
        etl_runs.write_rejects(
            conn, run_id,
            ((r.mongo_id, r.reason, r.document.decode(), r.source_id) for r in batch.rejects),
        )
        result.rejects = len(batch.rejects)
    return result


# -- derived samples (ETL_SERIES) -------------------------------------------------------
#
# Kept apart from the rest: these statements write ``series`` and ``samples``, whose
# writer is the store's series catalogue; this part is to go through it.


def prepare_samples(conn: psycopg.Connection) -> None:
    """The session's staging table of samples (temporary: scratch space, not schema)."""
    conn.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS pgpulse_etl_sample_stage (
            mongo_id text NOT NULL,
            time timestamptz NOT NULL,
            name text NOT NULL,
            labels jsonb NOT NULL,
            value double precision NOT NULL
        ) ON COMMIT DELETE ROWS
        """
    )


# Data-modifying CTEs share one snapshot, so series are made by an earlier statement.
_SERIES = """
    INSERT INTO series (name, labels)
    SELECT DISTINCT name, labels FROM pgpulse_etl_sample_stage
    ON CONFLICT ON CONSTRAINT series_name_labels_key DO NOTHING
"""

_SAMPLES = """
    INSERT INTO samples (time, series_id, value)
    SELECT s.time, se.id, s.value
    FROM pgpulse_etl_sample_stage s
    JOIN series se ON se.name = s.name AND se.labels = s.labels
"""


def write_samples(conn: psycopg.Connection, samples: Sequence[Sample], inserted: set[str]) -> int:
    """Write the samples of the readings in ``inserted`` (mongo_id of new rows);
    missing series are created. Returns the number of samples written."""
    with conn.cursor() as cur:
        written = 0
        with cur.copy("COPY pgpulse_etl_sample_stage (mongo_id, time, name, labels, value) FROM STDIN") as copy:
            for s in samples:
                if s.mongo_id in inserted:
                    copy.write_row((s.mongo_id, s.time, s.metric, s.labels.decode(), s.value))
                    written += 1
        if not written:
            return 0
        cur.execute(_SERIES)
        cur.execute(_SAMPLES)
        return cur.rowcount
