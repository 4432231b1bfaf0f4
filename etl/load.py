"""One transformed batch into PostgreSQL, inside the caller's transaction.

Rows go by COPY into a session-temporary staging table, then one
``INSERT ... SELECT ... ON CONFLICT (mongo_id) DO UPDATE`` moves them into
``reading_analytics``: no statement per row, and loading a document twice (a run
repeated after a crash) leaves one row. A row is rewritten only when the document
changed, so a repeated load changes nothing.

With ETL_SERIES, the samples go through the store (:mod:`etl.samples`): their
series are checked and resolved under the store's rules and limits before the
upsert (a document the store refuses becomes a reject), and samples are written
only for readings this transaction *inserted*: a reading loaded again never
doubles its samples.

The staging tables are temporary (``ON COMMIT DELETE ROWS``): per-connection
scratch space for COPY, not schema, so they live here and not in a migration.
"""

from __future__ import annotations

import dataclasses

import psycopg
from psycopg import sql

from etl import samples as etl_samples
from etl.transform import Batch
from pgpulse.settings import load_core
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
    conn.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS pgpulse_etl_stage (
            mongo_id text NOT NULL,
            reading_time timestamptz NOT NULL,
            source_id text,
            payload jsonb NOT NULL
        ) ON COMMIT DELETE ROWS
        """
    )


_UPSERT = """
    INSERT INTO reading_analytics AS r (mongo_id, reading_time, source_id, synced_at, run_id, payload)
    SELECT mongo_id, reading_time, source_id, now(), %(run_id)s, payload FROM pgpulse_etl_stage
    ON CONFLICT (mongo_id) DO UPDATE
        SET reading_time = EXCLUDED.reading_time, source_id = EXCLUDED.source_id,
            synced_at = EXCLUDED.synced_at, run_id = EXCLUDED.run_id, payload = EXCLUDED.payload
        WHERE (r.reading_time, r.source_id, r.payload)
              IS DISTINCT FROM (EXCLUDED.reading_time, EXCLUDED.source_id, EXCLUDED.payload)
    RETURNING mongo_id, (xmax = 0) AS inserted
"""

_UPSERT_COUNTS = sql.SQL("""
    WITH up AS ({upsert})
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), 0::bigint FROM up
""").format(upsert=sql.SQL(_UPSERT))

_RESOLVE_REJECTS = """
    UPDATE etl_rejects SET replayed_at = now()
    WHERE replayed_at IS NULL AND mongo_id IN (SELECT mongo_id FROM pgpulse_etl_stage)
"""

_REJECTS = """
    INSERT INTO etl_rejects (run_id, mongo_id, reason, document, source_id)
    SELECT %s, m, r, d::jsonb, s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS t(m, r, d, s)
    ON CONFLICT (mongo_id) WHERE replayed_at IS NULL DO UPDATE
        SET run_id = EXCLUDED.run_id, reason = EXCLUDED.reason, document = EXCLUDED.document,
            source_id = EXCLUDED.source_id, created_at = now()
"""


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
        admitted = etl_samples.admit(
            conn, batch, limits or SeriesLimits.from_settings(load_core())
        )
    with conn.cursor() as cur:
        if batch.rows:
            with cur.copy(
                "COPY pgpulse_etl_stage (mongo_id, reading_time, source_id, payload) FROM STDIN"
            ) as copy:
                for row in batch.rows:
                    copy.write_row((row.mongo_id, row.reading_time, row.source_id, row.payload.decode()))
            if admitted is not None:
                upserted = cur.execute(_UPSERT, {"run_id": run_id}).fetchall()
                new = {mongo_id for mongo_id, was_inserted in upserted if was_inserted}
                inserted, updated = len(new), len(upserted) - len(new)
                samples = etl_samples.write(conn, admitted, new)
            else:
                cur.execute(_UPSERT_COUNTS, {"run_id": run_id})
                inserted, updated, samples = cur.fetchone()
            result.inserted, result.updated, result.samples = inserted, updated, samples
            result.unchanged = len(batch.rows) - inserted - updated
            cur.execute(_RESOLVE_REJECTS)
        if batch.rejects:
            # One open reject per document: the first reason in a batch wins.
            unique = list({r.mongo_id: r for r in reversed(batch.rejects)}.values())
            cur.execute(
                _REJECTS,
                (
                    run_id,
                    [r.mongo_id for r in unique],
                    [r.reason for r in unique],
                    [r.document.decode() for r in unique],
                    [r.source_id for r in unique],
                ),
            )
            result.rejects = len(batch.rejects)
    return result
