"""``stale_markers``: the one writer of staleness markers, their pruning and reads.

A marker (series, time) says the series went stale at that time: Prometheus's
remote_write sends it as a special NaN when a series disappears from a scrape.
PromQL's lookback ends a series at its marker. A sample stored at the same time as
a marker wins over it (readers ignore such a marker), so a sample is never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from pgpulse import engine

# Rows as parallel arrays (times in PostgreSQL µs, the batch's unit): one statement
# whatever the number of markers.
INSERT = """
    INSERT INTO stale_markers (series_id, time)
    SELECT s, timestamptz '2000-01-01 00:00:00+00' + t * interval '1 microsecond'
    FROM unnest(%s::bigint[], %s::bigint[]) AS m(s, t)
    ON CONFLICT DO NOTHING
"""
PRUNE = "DELETE FROM stale_markers WHERE time < %s"
READ = """
    SELECT m.series_id, m.time FROM stale_markers m
    WHERE m.series_id = ANY(%s) AND m.time >= %s AND m.time <= %s
      AND NOT EXISTS (SELECT 1 FROM pgpulse_samples(ARRAY[m.series_id], m.time,
                                                    m.time + INTERVAL '1 microsecond'))
    ORDER BY m.series_id, m.time
"""
# On Citus the raw samples are never packed (revision 0013), and a per-marker call of
# the PL/pgSQL reader cannot be pushed to the shards: the markers and samples of a
# series share a shard, so the probe goes to ``samples`` there.
READ_DISTRIBUTED = """
    SELECT m.series_id, m.time FROM stale_markers m
    WHERE m.series_id = ANY(%s) AND m.time >= %s AND m.time <= %s
      AND NOT EXISTS (SELECT 1 FROM samples s WHERE s.series_id = m.series_id AND s.time = m.time)
    ORDER BY m.series_id, m.time
"""


def write(cur: psycopg.Cursor, markers: Sequence[tuple[int, int]], ids: Sequence[int]) -> int:
    """Store markers given as (PostgreSQL µs, series index into ``ids``); a marker
    stored again changes nothing. Returns the number of markers given."""
    if not markers:
        return 0
    cur.execute(INSERT, ([ids[k] for _, k in markers], [t for t, _ in markers]))
    return len(markers)


def prune(conn: psycopg.Connection, before: datetime) -> int:
    """Delete markers older than ``before`` (the raw retention's horizon)."""
    return conn.execute(PRUNE, (before,)).rowcount


def read(conn: psycopg.Connection, series_ids: Sequence[int], start: datetime,
         end: datetime) -> list[tuple[int, datetime]]:
    """(series id, time) of the markers of ``series_ids`` in [start, end], oldest first
    per series, without those hidden by a sample at the same time."""
    query = READ_DISTRIBUTED if engine.distributed(conn) else READ
    return conn.execute(query, (list(series_ids), start, end)).fetchall()
