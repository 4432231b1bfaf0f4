"""Selecting series and reading their samples: vector and range selectors.

Label matchers go to PostgreSQL (:mod:`pgpulse.selector` compiles them to a
condition on ``series``, through :mod:`pgpulse.store.series_reads`), and samples of
the matched series are read in one statement over the time the whole query needs
(:mod:`pgpulse.store.sample_reads`). What is left to do here is per step: the
lookback of an instant selector (the newest sample at most ``lookback`` old,
unless a staleness marker came after it), and the window of a range selector.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable

import promql_parser as pp
import psycopg

from pgpulse.promql.errors import ExecutionError
from pgpulse.promql.values import NAME, Labels, RangeSeries, Series, labels_of
from pgpulse.selector import Matcher, Selector
from pgpulse.store import sample_reads
from pgpulse.store.series_reads import find_series

# The parser's enums do not hash: keyed by their text.
_OPS = {str(pp.MatchOp.Equal): "=", str(pp.MatchOp.NotEqual): "!=", str(pp.MatchOp.Re): "=~",
        str(pp.MatchOp.NotRe): "!~"}


def to_selector(node: pp.VectorSelector) -> Selector:
    """The selector of a parsed vector selector: its name and every label matcher."""
    matchers = [Matcher(NAME, "=", node.name)] if node.name else []
    matchers += [Matcher(m.name, _OPS[str(m.op)], m.value) for m in node.matchers.matchers]
    return Selector(tuple(matchers))


@dataclasses.dataclass
class Loaded:
    labels: Labels
    times: list[int]
    values: list[float]
    markers: list[int]


class Reader:
    """Reads for one query on one connection, within its limits."""

    def __init__(self, conn: psycopg.Connection, max_series: int, max_samples: int,
                 check: Callable[[], None], *, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant  # every selector reads this tenant's series only
        self.max_series = max_series
        self.max_samples = max_samples
        self.samples = 0
        self.check = check

    def load(self, node: pp.VectorSelector, start_ms: int, end_ms: int) -> list[Loaded]:
        """Series ``node`` matches, with their samples and markers in [start_ms, end_ms]."""
        found = find_series(self.conn, to_selector(node), self.max_series, tenant=self.tenant)
        if len(found) > self.max_series:
            raise ExecutionError(f"the selector {node} matches more than {self.max_series} series "
                                 "(PROXY_MAX_QUERY_SERIES)")
        ids = [row[0] for row in found]
        points = sample_reads.read_samples(self.conn, ids, start_ms, end_ms)
        markers = sample_reads.read_markers(self.conn, ids, start_ms, end_ms)
        self.samples += sum(len(t) for t, _ in points.values())
        if self.samples > self.max_samples:
            raise ExecutionError("query processing would load too many samples into memory "
                                 f"(more than {self.max_samples})")
        self.check()
        out = []
        for sid, name, labels, _type in found:
            times, values = points.get(sid, ([], []))
            out.append(Loaded(labels_of({**labels, NAME: name}), times, values, markers.get(sid, [])))
        return out


def instant(loaded: list[Loaded], refs: list[int], lookback_ms: int) -> list[Series]:
    """An instant selector at each reference time: the newest sample in
    [ref - lookback, ref], unless a staleness marker is newer than it."""
    out = []
    for s in loaded:
        values: list[float | None] = []
        any_value = False
        for ref in refs:
            i = bisect.bisect_right(s.times, ref) - 1
            if i < 0 or s.times[i] < ref - lookback_ms:
                values.append(None)
                continue
            if s.markers:
                k = bisect.bisect_right(s.markers, ref) - 1
                if k >= 0 and s.markers[k] > s.times[i]:
                    values.append(None)
                    continue
            values.append(s.values[i])
            any_value = True
        if any_value:
            out.append(Series(s.labels, values))
    return out


def sample_times(loaded: list[Loaded], refs: list[int], lookback_ms: int) -> list[Series]:
    """As :func:`instant`, but each value is the time of the sample (ms): timestamp()."""
    out = []
    for s in loaded:
        times = Loaded(s.labels, s.times, [float(t) for t in s.times], s.markers)
        out.extend(instant([times], refs, lookback_ms))
    return out


def ranged(loaded: list[Loaded]) -> list[RangeSeries]:
    """The series of a range selector: their samples (markers are not values)."""
    return [RangeSeries(s.labels, s.times, s.values) for s in loaded]


def window(times: list[int], start: int, end: int) -> tuple[int, int]:
    """Indexes [lo, hi) of ``times`` within [start, end]."""
    return bisect.bisect_left(times, start), bisect.bisect_right(times, end)
