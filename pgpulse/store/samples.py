"""``samples``: the one writer of the narrow samples table (time, series_id, value).

A :class:`~pgpulse.store.batch.Batch` goes in with one binary COPY inside the
caller's transaction, after :func:`pgpulse.store.series.resolve` gave its series
ids (creating series under the limits and the type rule). The caller commits, then
adds what was learned to its series cache.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import psycopg

from pgpulse.store import series
from pgpulse.store.batch import Batch, CacheKey

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
# One row: 3 fields; timestamptz (8 bytes, µs since 2000), int8 series id, float8 value.
_ROW = struct.Struct("!hiqiqid")
COPY_SAMPLES = "COPY samples (time, series_id, value) FROM STDIN (FORMAT BINARY)"


def copy_rows(rows: Iterable[tuple[int, int, float]], ids: list[int]) -> bytes:
    """The binary COPY stream of samples rows (time µs since 2000, series index, value)."""
    pack = _ROW.pack
    return b"".join([_HEADER, *[pack(3, 8, t, 8, ids[k], 8, v) for t, k, v in rows], _TRAILER])


def write(conn: psycopg.Connection, batch: Batch, ids: list[int]) -> int:
    """COPY the batch's rows into ``samples`` (``ids``: series id of each key)."""
    if not batch.rows:
        return 0
    data = copy_rows(batch.rows, ids)
    with conn.cursor() as cur, cur.copy(COPY_SAMPLES) as copy:
        copy.write(data)
    return len(batch.rows)


def write_batch(
    conn: psycopg.Connection,
    batch: Batch,
    limits: series.SeriesLimits,
    cache: series.SeriesCache | None = None,
) -> tuple[int, dict[CacheKey, tuple[int, str]]]:
    """Resolve (or create) the batch's series and COPY its samples.

    Returns (samples written, series to add to ``cache`` after the commit). Raises
    the errors of :func:`pgpulse.store.series.resolve`; then nothing is written.
    """
    ids, learned = series.resolve(conn, batch, limits, cache)
    return write(conn, batch, ids), learned
