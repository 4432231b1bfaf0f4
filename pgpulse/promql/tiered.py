"""Answers from the 5m and 1h tiers, where they equal the raw answer.

A tier keeps, per series and bucket ``[b, b + width)`` (buckets aligned to the Unix
epoch), the count, sum, min, max and last value of the raw samples in it. Staleness
markers are not samples (they never enter a bucket). Prometheus 2.42's windows are
closed on both ends, so:

* A range function over ``x[r]`` evaluated at ``t`` sees ``[t - r, t]``. When every
  evaluation time is a multiple of the width and ``r`` is too, that window is the
  buckets ``[t - r, t)`` plus the raw samples exactly at ``t`` (read separately).
  ``count_over_time``, ``min_over_time``, ``max_over_time`` and
  ``present_over_time`` are then exact; ``sum_over_time`` and ``avg_over_time`` add
  the buckets' sums, which equals the raw answer up to the rounding of the additions
  (a different order; both within 1e-9 relative on any data without cancellation).
  Where a sum, min or max read is not finite (NaN or an infinity among the values,
  whose rules in Go's comparisons and running mean differ from PostgreSQL's), the
  selector is read raw instead. ``rate``, ``increase``, ``delta``, ``resets``,
  ``changes``, ``last_over_time``, quantiles and deviations need what a bucket does
  not keep (first sample, resets, times of samples): always raw.
* An instant selector at ``t`` is the newest sample in ``[t - lookback, t]`` unless a
  staleness marker is newer. With the default 5-minute lookback and ``t`` a multiple
  of 5 minutes, that is the raw sample at ``t`` or else the 5m bucket ``[t - 5m, t)``'s
  last value. Series with a staleness marker anywhere in the queried range are read
  raw (a bucket keeps no sample times to compare a marker with).

Everything else is read raw. Which tier served each selector is recorded by the
:class:`~pgpulse.promql.selection.Reader` and told in the answer.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import promql_parser as pp

from pgpulse.promql import gomath
from pgpulse.promql.errors import ExecutionError
from pgpulse.promql.selection import Reader, instant
from pgpulse.promql.values import NAME, Series, drop_name, labels_of
from pgpulse.store import bucket_reads, sample_reads
from pgpulse.store.bucket_reads import Buckets

# (name, width in ms, view), coarsest first: the coarsest tier that lines up serves.
TIERS = (("1h", 3_600_000, "samples_1h"), ("5m", 300_000, "samples_5m"))
INSTANT_TIER = ("5m", 300_000, "samples_5m")


def _sum(values: Sequence[float]) -> float:
    total = c = 0.0
    for v in values:
        total, c = gomath.kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


# What each function is, from the buckets' columns and the raw samples at ``t``:
# (count, sum, min, max of buckets in the window, values at t) -> value.
Combine = Callable[[list[float], list[float], list[float], list[float], list[float]], float]
RANGE_FUNCTIONS: dict[str, Combine] = {
    "count_over_time": lambda c, s, lo, hi, at: float(sum(c) + len(at)),
    "sum_over_time": lambda c, s, lo, hi, at: _sum(s + at),
    "avg_over_time": lambda c, s, lo, hi, at: _sum(s + at) / (sum(c) + len(at)),
    "min_over_time": lambda c, s, lo, hi, at: min(lo + at),
    "max_over_time": lambda c, s, lo, hi, at: max(hi + at),
    "present_over_time": lambda c, s, lo, hi, at: 1.0,
}


def _aligned(refs: Sequence[int], width: int) -> bool:
    return all(r % width == 0 for r in refs)


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def _bucket_read(reader: Reader, view: str, width: int, ids: list[int], refs: list[int],
                 range_ms: int) -> dict[int, Buckets]:
    """The buckets in [ref - range_ms, ref) for every ref."""
    low, high = min(refs) - range_ms, max(refs)
    distinct = sorted(set(refs))
    per = range_ms // width
    # Only the buckets the windows need when they are sparse (a step longer than the
    # range), else every bucket of the range in one scan.
    if len(distinct) * per * 2 < (high - low) // width:
        starts = sorted({r - range_ms + k * width for r in distinct for k in range(per)})
        return bucket_reads.read_buckets(reader.conn, view, ids, starts_ms=starts)
    return bucket_reads.read_buckets(reader.conn, view, ids, start_ms=low, end_ms=high)


def range_function(reader: Reader, name: str, node: pp.MatrixSelector, refs: list[int],
                   range_ms: int) -> list[Series] | None:
    """``name(node)`` at ``refs`` from the coarsest tier that gives the raw answer, or
    None when none does (the caller reads raw)."""
    combine = RANGE_FUNCTIONS.get(name)
    if combine is None or not refs:
        return None
    fits = [t for t in TIERS if range_ms % t[1] == 0 and _aligned(refs, t[1])]
    if not fits:
        return None
    tier, width, view = fits[0]
    vs = node.vector_selector
    found = reader.find(vs)
    ids = [row[0] for row in found]
    buckets = _bucket_read(reader, view, width, ids, refs, range_ms)
    at = bucket_reads.read_at(reader.conn, ids, refs)
    reader.count(sum(len(b.starts) for b in buckets.values()) + sum(len(t) for t, _ in at.values()))
    for b in buckets.values():
        if not (_finite(b.sum) and _finite(b.min) and _finite(b.max)):
            return None
    for _times, values in at.values():
        if not _finite(values):
            return None
    out: list[Series] = []
    for sid, metric, labels, _type in found:
        b = buckets.get(sid)
        at_times, at_values = at.get(sid, ([], []))
        values: list[float | None] = []
        for ref in refs:
            here = at_values[bisect.bisect_left(at_times, ref):bisect.bisect_right(at_times, ref)]
            lo = hi = 0
            if b is not None:
                lo = bisect.bisect_left(b.starts, ref - range_ms)
                hi = bisect.bisect_left(b.starts, ref)
            if lo >= hi and not here:
                values.append(None)
                continue
            assert b is not None or here
            cols = (b.count[lo:hi], b.sum[lo:hi], b.min[lo:hi], b.max[lo:hi]) if b else ([], [], [], [])
            values.append(combine(*cols, here))
        if any(v is not None for v in values):
            out.append(Series(drop_name(labels_of({**labels, NAME: metric})), values))
    if len({s.labels for s in out}) != len(out):
        raise ExecutionError("vector cannot contain metrics with the same labelset")
    reader.served(tier, f"{name}({node})")
    return out


def instant_selector(reader: Reader, node: pp.VectorSelector, refs: list[int],
                     lookback_ms: int) -> list[Series] | None:
    """``node`` at ``refs`` from the 5m tier where it gives the raw answer, or None."""
    tier, width, view = INSTANT_TIER
    if lookback_ms != width or not refs or not _aligned(refs, width):
        return None
    found = reader.find(node)
    ids = [row[0] for row in found]
    low, high = min(refs) - lookback_ms, max(refs)
    marked = set(sample_reads.read_markers(reader.conn, ids, low, high))
    tiered = [sid for sid in ids if sid not in marked]
    buckets = _bucket_read(reader, view, width, tiered, refs, width)
    at = bucket_reads.read_at(reader.conn, tiered, refs)
    reader.count(sum(len(b.starts) for b in buckets.values()) + sum(len(t) for t, _ in at.values()))
    raw: dict[int, Series] = {}
    if marked:
        rows = [row for row in found if row[0] in marked]
        for row, series in zip(rows, reader.load_found(rows, low, high), strict=True):
            values = instant([series], refs, lookback_ms)
            if values:
                raw[row[0]] = values[0]
        reader.served("raw", f"{node} (series with staleness markers)")
    out: list[Series] = []
    for sid, metric, labels, _type in found:
        if sid in marked:
            if sid in raw:
                out.append(raw[sid])
            continue
        b = buckets.get(sid)
        at_times, at_values = at.get(sid, ([], []))
        values: list[float | None] = []
        for ref in refs:
            k = bisect.bisect_right(at_times, ref) - 1
            if k >= 0 and at_times[k] == ref:
                values.append(at_values[k])
                continue
            if b is not None:
                i = bisect.bisect_left(b.starts, ref - width)
                if i < len(b.starts) and b.starts[i] == ref - width:
                    values.append(b.last[i])
                    continue
            values.append(None)
        if any(v is not None for v in values):
            out.append(Series(labels_of({**labels, NAME: metric}), values))
    reader.served(tier, str(node))
    return out
