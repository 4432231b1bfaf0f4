"""``samples``: the one writer of the narrow samples table (time, series_id, value).

A :class:`~pgpulse.store.batch.Batch` goes in inside the caller's transaction,
after :func:`pgpulse.store.series.resolve` gave its series ids (creating series
under the limits and the type rule). The caller commits, then adds what was learned
to its series cache.

One value per (series, time), the last written: ``samples`` is unique on
(series_id, time) (revision 0005), and a sample written again replaces the stored
value, within a batch (the later row of the batch) and across batches (the later
batch). So a retried batch changes nothing, and every answer, raw or rolled up,
counts a sample once. The same rule as Prometheus and VictoriaMetrics.

How, keeping COPY's speed on the hot path: the batch goes in with one binary COPY
inside a savepoint. Only when that meets the unique index (a retry, an overwrite,
or the same (series, time) twice in the batch) is the savepoint rolled back and the
same COPY stream sent into a session-temporary staging table, from which
:data:`UPSERT` moves one row per (series, time), the batch's last, into
``samples`` (``ON CONFLICT DO UPDATE``). docs/performance.md has the figures of
both paths. The staging table is per-connection scratch space (``ON COMMIT DELETE
ROWS``), not schema, so it lives here and not in a migration.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import psycopg
from psycopg import errors

from pgpulse.store import metadata, series, staleness
from pgpulse.store.batch import Batch

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
# One row: 3 fields; timestamptz (8 bytes, µs since 2000), int8 series id, float8 value.
_ROW = struct.Struct("!hiqiqid")
COPY_SAMPLES = "COPY samples (time, series_id, value) FROM STDIN (FORMAT BINARY)"

# ``ordinal`` numbers the rows in the order COPY wrote them: the batch's order.
STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS pgpulse_samples_stage (
        time timestamptz NOT NULL,
        series_id bigint NOT NULL,
        value double precision NOT NULL,
        ordinal bigint GENERATED ALWAYS AS IDENTITY
    ) ON COMMIT DELETE ROWS
"""
COPY_STAGE = "COPY pgpulse_samples_stage (time, series_id, value) FROM STDIN (FORMAT BINARY)"
# The batch's last row of each (series, time) wins over the batch's earlier ones and
# over the stored one. An unchanged value is not rewritten: a retry writes nothing
# and (portable engine) logs nothing for the tiers to rebuild.
UPSERT = """
    INSERT INTO samples AS s (time, series_id, value)
    SELECT DISTINCT ON (series_id, time) time, series_id, value
    FROM pgpulse_samples_stage
    ORDER BY series_id, time, ordinal DESC
    ON CONFLICT (series_id, time) DO UPDATE SET value = EXCLUDED.value
        WHERE s.value IS DISTINCT FROM EXCLUDED.value
"""
_SAVEPOINT = "SAVEPOINT pgpulse_samples_copy"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT pgpulse_samples_copy"
_RELEASE = "RELEASE SAVEPOINT pgpulse_samples_copy"


def copy_rows(rows: Iterable[tuple[int, int, float]], ids: list[int]) -> bytes:
    """The binary COPY stream of samples rows (time µs since 2000, series index, value)."""
    pack = _ROW.pack
    return b"".join([_HEADER, *[pack(3, 8, t, 8, ids[k], 8, v) for t, k, v in rows], _TRAILER])


def copy_direct(cur: psycopg.Cursor, data: bytes) -> None:
    """COPY ``data`` straight into ``samples``; raises UniqueViolation on a sample
    already stored or twice in ``data`` (the caller's savepoint undoes it)."""
    with cur.copy(COPY_SAMPLES) as copy:
        copy.write(data)


def upsert_staged(cur: psycopg.Cursor, data: bytes) -> None:
    """COPY ``data`` into the staging table and move it into ``samples`` by
    :data:`UPSERT` (last write wins). Needs an open transaction."""
    cur.execute(STAGE)
    with cur.copy(COPY_STAGE) as copy:
        copy.write(data)
    cur.execute(UPSERT)
    # Emptied now, not only at commit: a caller may write several batches in one
    # transaction (DELETE, not TRUNCATE: no new file for a few thousand rows).
    cur.execute("DELETE FROM pgpulse_samples_stage")


def write_stream(cur: psycopg.Cursor, data: bytes) -> None:
    """Write one binary COPY stream of samples rows (:func:`copy_rows`): COPY in a
    savepoint, the staged upsert when that meets the unique index. Needs an open
    transaction or a non-autocommit connection (:func:`write` sees to it)."""
    cur.execute(_SAVEPOINT)
    try:
        copy_direct(cur, data)
    except errors.UniqueViolation:
        cur.execute(_ROLLBACK_TO)
        cur.execute(_RELEASE)
        upsert_staged(cur, data)
    else:
        cur.execute(_RELEASE)


def write(conn: psycopg.Connection, batch: Batch, ids: list[int]) -> int:
    """Write the batch's rows into ``samples`` (``ids``: series id of each key), last
    write wins per (series, time). Returns the number of rows taken."""
    if not batch.rows:
        return 0
    data = copy_rows(batch.rows, ids)
    with conn.cursor() as cur:
        if conn.autocommit:
            # A savepoint and the staging table need a transaction block.
            with conn.transaction():
                write_stream(cur, data)
        else:
            # The caller's transaction (opened by the first statement if none is).
            write_stream(cur, data)
    return len(batch.rows)


def write_batch(
    conn: psycopg.Connection,
    batch: Batch,
    limits: series.SeriesLimits,
    cache: series.SeriesCache | None = None,
    *,
    tenant: str,
) -> tuple[int, dict[series.TenantKey, tuple[int, str]]]:
    """Resolve (or create) the batch's series of ``tenant`` and write its samples
    (:func:`write`), its staleness markers and its metric metadata.

    Returns (samples taken, series to add to ``cache`` after the commit). Raises
    the errors of :func:`pgpulse.store.series.resolve`; then nothing is written.
    """
    ids, learned = series.resolve(conn, batch, limits, cache, tenant=tenant)
    taken = write(conn, batch, ids)
    if batch.stale or batch.metadata:
        with conn.cursor() as cur:
            staleness.write(cur, batch.stale, ids)
            metadata.upsert(cur, batch.metadata, tenant=tenant)
    return taken, learned
