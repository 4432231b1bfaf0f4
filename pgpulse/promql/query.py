"""Instant and range queries: parse, evaluate, and shape the answer as Prometheus's
HTTP API does (``resultType`` and ``result``; values as strings)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psycopg

from pgpulse.promql.engine import Ctx, Evaluator, parse, value_type
from pgpulse.promql.errors import BadQuery, ExecutionError
from pgpulse.promql.selection import Reader
from pgpulse.promql.values import RangeValue, Scalar, String, format_time, format_value
from pgpulse.store.sample_reads import limit_statements


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_s: float = 120.0
    max_series: int = 10_000  # series one selector may match
    max_samples: int = 5_000_000  # samples one query may load
    max_points: int = 1_000_000  # points one answer may hold
    tiers: bool = True  # answer from the 5m and 1h tiers where they equal raw (PROXY_PROMQL_TIERS)


@dataclasses.dataclass
class Result:
    result_type: str
    result: Any
    warnings: list[str] = dataclasses.field(default_factory=list)
    # (tier, expression) of every read: "raw", "5m" or "1h", and what it served.
    sources: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def tiers(self) -> list[str]:
        """The tiers that served the answer, each once, finest first."""
        return [t for t in ("raw", "5m", "1h") if any(s[0] == t for s in self.sources)]

    @property
    def infos(self) -> list[str]:
        """One line per read, which tier served which selector, when a tier other than
        raw served any: an all-raw answer keeps Prometheus's own envelope (the header
        still says raw)."""
        if all(tier == "raw" for tier, _what in self.sources):
            return []
        return [f"{what} served by the {tier} tier" for tier, what in self.sources]

    def data(self) -> dict[str, Any]:
        return {"resultType": self.result_type, "result": self.result}


def _evaluator(conn: psycopg.Connection, start_ms: int, end_ms: int, limits: Limits,
               tenant: str) -> Evaluator:
    deadline = time.monotonic() + limits.timeout_s
    limit_statements(conn, int(limits.timeout_s * 1000))
    evaluator = Evaluator(Reader(conn, limits.max_series, limits.max_samples, lambda: None, tenant=tenant),
                          start_ms, end_ms, deadline, tiers=limits.tiers)
    evaluator.reader.check = evaluator.check
    return evaluator


def _metric(labels) -> dict[str, str]:
    return dict(labels)


def instant_query(conn: psycopg.Connection, text: str, at_ms: int, limits: Limits, *,
                  tenant: str) -> Result:
    """``text`` evaluated at ``at_ms`` over ``tenant``'s series: a vector, scalar,
    string or matrix."""
    expr = parse(text)
    evaluator = _evaluator(conn, at_ms, at_ms, limits, tenant)
    result = _instant(evaluator.eval(expr, Ctx([at_ms])), at_ms, limits)
    result.sources = evaluator.reader.sources
    return result


def _instant(value: object, at_ms: int, limits: Limits) -> Result:
    t = format_time(at_ms)
    if isinstance(value, Scalar):
        return Result("scalar", [t, format_value(value.values[0])])
    if isinstance(value, String):
        return Result("string", [t, value.value])
    if isinstance(value, RangeValue):
        end = value.ends[0]
        out = []
        for s in value.series:
            points = [[format_time(ts), format_value(v)] for ts, v in zip(s.times, s.values, strict=True)
                      if end - value.range_ms <= ts <= end]
            if points:
                out.append({"metric": _metric(s.labels), "values": points})
        _check_points(sum(len(s["values"]) for s in out), limits)
        return Result("matrix", out)
    out = [{"metric": _metric(s.labels), "value": [t, format_value(s.values[0])]}
           for s in value if s.values[0] is not None]
    _check_points(len(out), limits)
    return Result("vector", out)


def range_query(conn: psycopg.Connection, text: str, start_ms: int, end_ms: int, step_ms: int,
                limits: Limits, *, tenant: str) -> Result:
    """``text`` evaluated over ``tenant``'s series at start, start + step, ... <= end:
    a matrix."""
    expr = parse(text)
    kind = value_type(expr)
    if kind not in ("scalar", "vector"):
        name = "range vector" if kind == "matrix" else kind
        raise BadQuery(f'invalid expression type "{name}" for range query, must be Scalar or '
                       "instant Vector")
    times = list(range(start_ms, end_ms + 1, step_ms))
    evaluator = _evaluator(conn, start_ms, end_ms, limits, tenant)
    value = evaluator.eval(expr, Ctx(times))
    sources = evaluator.reader.sources
    if isinstance(value, Scalar):
        series = [((), list(value.values))]
    else:
        assert isinstance(value, list)
        series = [(s.labels, s.values) for s in value]
    out = []
    total = 0
    for labels, values in sorted(series, key=lambda s: s[0]):
        points = [[format_time(t), format_value(v)] for t, v in zip(times, values, strict=True)
                  if v is not None]
        if points:
            total += len(points)
            out.append({"metric": _metric(labels), "values": points})
    _check_points(total, limits)
    return Result("matrix", out, sources=sources)


def _check_points(points: int, limits: Limits) -> None:
    if points > limits.max_points:
        raise ExecutionError(f"the answer would hold {points} points; the limit is "
                             f"{limits.max_points} (PROXY_MAX_POINTS)")
