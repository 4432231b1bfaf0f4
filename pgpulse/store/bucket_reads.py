"""Rolled-up buckets of chosen series, and raw samples at exact instants, for PromQL.

When a PromQL window lines up with a tier's buckets (:mod:`pgpulse.promql.tiered`),
the answer is made of the buckets inside the window, read here from the tier's view
(the rolled-up rows and the part above the watermark alike), plus the raw samples
that fall exactly on the window's closed end: Prometheus 2.42's windows are
``[t - range, t]`` and a tier's buckets ``[b, b + width)``, so a sample at ``t`` is
in the bucket that starts there, outside the window's buckets, but inside the window.

Times are integer milliseconds since the Unix epoch, as in
:mod:`pgpulse.store.sample_reads` (a stored fraction of a millisecond truncates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# One row per series with its buckets as arrays (loaded in C by the binary protocol).
BUCKETS = """
    SELECT series_id, array_agg(floor(extract(epoch FROM bucket) * 1000)::bigint ORDER BY bucket),
           array_agg(count::double precision ORDER BY bucket), array_agg(sum ORDER BY bucket),
           array_agg(min ORDER BY bucket), array_agg(max ORDER BY bucket),
           array_agg(last ORDER BY bucket)
    FROM {relation}
    WHERE series_id = ANY(%(ids)s) AND count > 0
      AND bucket = ANY(ARRAY(SELECT timestamptz 'epoch' + b * interval '1 millisecond'
                             FROM unnest(%(buckets)s::bigint[]) AS u(b)))
    GROUP BY series_id
"""
BUCKET_RANGE = """
    SELECT series_id, array_agg(floor(extract(epoch FROM bucket) * 1000)::bigint ORDER BY bucket),
           array_agg(count::double precision ORDER BY bucket), array_agg(sum ORDER BY bucket),
           array_agg(min ORDER BY bucket), array_agg(max ORDER BY bucket),
           array_agg(last ORDER BY bucket)
    FROM {relation}
    WHERE series_id = ANY(%(ids)s) AND bucket >= %(start)s AND bucket < %(end)s AND count > 0
    GROUP BY series_id
"""
# The samples whose millisecond lies on one of the instants: [t, t + 1 ms) each,
# through pgpulse_samples(), which also reads the packed hours of the portable engine.
# Instants travel as bigint milliseconds: a timestamptz[] parameter of a few hundred
# elements took seconds to parse here, the integers none.
AT = """
    SELECT s.series_id, array_agg(floor(extract(epoch FROM s.time) * 1000)::bigint ORDER BY s.time),
           array_agg(s.value ORDER BY s.time)
    FROM (SELECT timestamptz 'epoch' + ms * interval '1 millisecond'
          FROM unnest(%(at)s::bigint[]) AS u(ms)) AS i(t)
    CROSS JOIN LATERAL pgpulse_samples(%(ids)s, i.t, i.t + interval '1 millisecond') AS s
    GROUP BY s.series_id
"""


@dataclasses.dataclass
class Buckets:
    """One series' buckets holding at least one sample, oldest first (times in ms)."""

    starts: list[int]
    count: list[float]
    sum: list[float]
    min: list[float]
    max: list[float]
    last: list[float]


def _at(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def read_buckets(conn: psycopg.Connection, relation: str, series_ids: Sequence[int],
                 starts_ms: Sequence[int] | None = None, start_ms: int | None = None,
                 end_ms: int | None = None) -> dict[int, Buckets]:
    """Buckets of ``series_ids`` in the tier view ``relation``: those starting at one of
    ``starts_ms``, or else those starting in [start_ms, end_ms)."""
    if not series_ids:
        return {}
    if starts_ms is not None:
        query = sql.SQL(BUCKETS).format(relation=sql.Identifier(relation))
        params = {"ids": list(series_ids), "buckets": list(starts_ms)}
    else:
        assert start_ms is not None and end_ms is not None
        query = sql.SQL(BUCKET_RANGE).format(relation=sql.Identifier(relation))
        params = {"ids": list(series_ids), "start": _at(start_ms), "end": _at(end_ms)}
    rows = conn.execute(query, params, binary=True).fetchall()
    return {sid: Buckets(*cols) for sid, *cols in rows}


def read_at(conn: psycopg.Connection, series_ids: Sequence[int],
            instants_ms: Sequence[int]) -> dict[int, tuple[list[int], list[float]]]:
    """Raw samples of ``series_ids`` whose time, in whole milliseconds, is one of
    ``instants_ms``: (times, values) per series, oldest first."""
    if not series_ids or not instants_ms:
        return {}
    rows = conn.execute(AT, {"ids": list(series_ids), "at": sorted(set(instants_ms))},
                        binary=True).fetchall()
    return {sid: (times, values) for sid, times, values in rows}
