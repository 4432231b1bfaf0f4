"""Raw samples and staleness markers of chosen series over a time range, for PromQL.

The PromQL evaluator (:mod:`pgpulse.promql`) selects series with
:func:`pgpulse.store.series_reads.find_series` (label matchers compiled to SQL by
:mod:`pgpulse.selector`) and then reads their samples here, one statement for all
of them. Times are integer milliseconds since the Unix epoch, Prometheus's unit: a
stored time with a fraction of a millisecond is truncated, as Prometheus truncates
what it is sent. Markers hidden by a sample at the same time are left out
(:mod:`pgpulse.store.staleness`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from pgpulse.store import staleness

# Integer milliseconds computed in SQL: exact (extract gives numeric). One row per
# series with its times and values as arrays: the binary protocol loads int8[] and
# float8[] in C, far faster than a Python loop over one row per sample.
READ = """
    SELECT series_id, array_agg(floor(extract(epoch FROM time) * 1000)::bigint ORDER BY time),
           array_agg(value ORDER BY time)
    FROM pgpulse_samples(%(ids)s, %(start)s, %(end)s)
    GROUP BY series_id
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
Points = tuple[list[int], list[float]]  # (times in ms, values), oldest first


def _at(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def read_samples(conn: psycopg.Connection, series_ids: Sequence[int], start_ms: int,
                 end_ms: int) -> dict[int, Points]:
    """Samples of ``series_ids`` with start_ms <= time <= end_ms, per series id."""
    out: dict[int, Points] = {}
    if not series_ids:
        return out
    # The upper bound is exclusive one millisecond later: a time stored with a
    # fraction of a millisecond past end_ms still truncates to end_ms.
    rows = conn.execute(READ, {"ids": list(series_ids), "start": _at(start_ms),
                               "end": _at(end_ms + 1)}, binary=True).fetchall()
    for sid, times, values in rows:
        out[sid] = (times, values)
    return out


def read_markers(conn: psycopg.Connection, series_ids: Sequence[int], start_ms: int,
                 end_ms: int) -> dict[int, list[int]]:
    """Times (ms) of the staleness markers of ``series_ids`` in [start_ms, end_ms]."""
    out: dict[int, list[int]] = {}
    if not series_ids:
        return out
    for sid, when in staleness.read(conn, series_ids, _at(start_ms), _at(end_ms + 1)):
        ms = (when - _EPOCH) // _MS
        if ms <= end_ms:
            out.setdefault(sid, []).append(ms)
    return out


def limit_statements(conn: psycopg.Connection, timeout_ms: int) -> None:
    """Bound every statement of the caller's transaction to ``timeout_ms`` (a query's
    own timeout, when shorter than the server's)."""
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(max(1, timeout_ms)),))
    # No JIT: a query's statements are index probes (series ids against a time range,
    # or against instants) whose row estimates are far too high, which made PostgreSQL
    # compile them: seconds of compiling for milliseconds of reading.
    conn.execute("SELECT set_config('jit', 'off', true)")


IDS_WITH_SAMPLES = """
    SELECT s.id FROM unnest(%(ids)s::bigint[]) AS s(id)
    WHERE EXISTS (SELECT 1 FROM pgpulse_samples(ARRAY[s.id], %(start)s, %(end)s))
"""


def ids_with_samples(conn: psycopg.Connection, series_ids: Sequence[int], start_ms: int | None,
                     end_ms: int | None) -> set[int]:
    """Which of ``series_ids`` have a sample in [start_ms, end_ms] (None: no bound)."""
    if not series_ids:
        return set()
    start = _at(start_ms) if start_ms is not None else _EPOCH
    end = _at(end_ms + 1) if end_ms is not None else datetime(9999, 1, 1, tzinfo=UTC)
    rows = conn.execute(IDS_WITH_SAMPLES, {"ids": list(series_ids), "start": start, "end": end})
    return {r[0] for r in rows.fetchall()}
