"""The native API's per-step functions, defined by the PromQL engine.

``GET /api/query?agg=rate`` is PromQL's ``rate(x[step])`` evaluated at every multiple
of the step in the range (the step grid counted from the Unix epoch), over the raw
samples of the chosen series: the same function the engine applies to a range
vector (:data:`pgpulse.promql.functions.RANGE_FUNCTIONS`), the same closed windows
``[T - step, T]`` of Prometheus 2.42, the same millisecond times.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import psycopg

from pgpulse.promql import functions
from pgpulse.store import sample_reads


def grid(start_ms: int, end_ms: int, step_ms: int) -> list[int]:
    """The multiples of ``step_ms`` in [start_ms, end_ms]."""
    first = -(-start_ms // step_ms) * step_ms
    return list(range(first, end_ms + 1, step_ms))


def per_step(conn: psycopg.Connection, name: str, series_ids: Sequence[int], start_ms: int,
             end_ms: int, step_ms: int) -> dict[int, list[tuple[int, float]]]:
    """``name(x[step])`` of each of ``series_ids`` at every multiple of ``step_ms`` in
    [start_ms, end_ms]: (time in ms, value) per series id, oldest first; steps without
    a value are left out."""
    fn = functions.RANGE_FUNCTIONS[name]
    ends = grid(start_ms, end_ms, step_ms)
    out: dict[int, list[tuple[int, float]]] = {}
    if not ends or not series_ids:
        return out
    points = sample_reads.read_samples(conn, series_ids, ends[0] - step_ms, ends[-1])
    for sid, (times, values) in points.items():
        found = []
        for end in ends:
            lo = bisect.bisect_left(times, end - step_ms)
            hi = bisect.bisect_right(times, end)
            if lo < hi:
                value = fn(times[lo:hi], values[lo:hi], end - step_ms, end, end, [])
                if value is not None:
                    found.append((end, value))
        if found:
            out[sid] = found
    return out
