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


@dataclasses.dataclass
class Result:
    result_type: str
    result: Any
    warnings: list[str] = dataclasses.field(default_factory=list)

    def data(self) -> dict[str, Any]:
        return {"resultType": self.result_type, "result": self.result}


def _evaluator(conn: psycopg.Connection, start_ms: int, end_ms: int, limits: Limits,
               tenant: str) -> Evaluator:
    deadline = time.monotonic() + limits.timeout_s
    limit_statements(conn, int(limits.timeout_s * 1000))
    evaluator = Evaluator(Reader(conn, limits.max_series, limits.max_samples, lambda: None, tenant=tenant),
                          start_ms, end_ms, deadline)
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
    value = evaluator.eval(expr, Ctx([at_ms]))
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
    return Result("matrix", out)


def _check_points(points: int, limits: Limits) -> None:
    if points > limits.max_points:
        raise ExecutionError(f"the answer would hold {points} points; the limit is "
                             f"{limits.max_points} (PROXY_MAX_POINTS)")
