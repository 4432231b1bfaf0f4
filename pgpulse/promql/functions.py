"""PromQL's functions, as Prometheus 2.42 computes them (promql/functions.go).

Range functions take the samples of one series inside one window (times in ms,
values) and answer a value or None (no sample at that step). Instant functions map
one value. Labels and vectors are the engine's business (:mod:`pgpulse.promql.engine`).
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pgpulse.promql import gomath
from pgpulse.promql.errors import BadQuery, ExecutionError
from pgpulse.promrate import extrapolate

NAN = math.nan

# (times, values, window start, window end, evaluation time, scalar arguments)
RangeFn = Callable[[Sequence[int], Sequence[float], int, int, int, Sequence[float]], float | None]


def _extrapolated(counter: bool, rate: bool) -> RangeFn:
    def fn(ts, vs, start, end, _now, _args):
        return extrapolate(ts, vs, start, end, counter=counter, per_second=rate,
                           unit=1000, zero_clamp_first=True)
    return fn


def _instant_value(rate: bool) -> RangeFn:
    def fn(ts, vs, _start, _end, _now, _args):
        if len(vs) < 2:
            return None
        last, prev = vs[-1], vs[-2]
        value = last if rate and last < prev else last - prev
        interval = ts[-1] - ts[-2]
        if interval == 0:
            return None
        if rate:
            value = gomath.div(value, interval / 1000)
        return value
    return fn


def linear_regression(ts: Sequence[int], vs: Sequence[float], intercept_time: int
                      ) -> tuple[float, float]:
    """Least-squares slope and intercept at ``intercept_time``, as Prometheus's
    linearRegression (Kahan-summed; a constant series has slope 0)."""
    n = 0.0
    sx = cx = sy = cy = sxy = cxy = sx2 = cx2 = 0.0
    init = vs[0]
    const = True
    for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
        if const and i > 0 and v != init:
            const = False
        n += 1.0
        x = (t - intercept_time) / 1e3
        sx, cx = gomath.kahan_inc(x, sx, cx)
        sy, cy = gomath.kahan_inc(v, sy, cy)
        sxy, cxy = gomath.kahan_inc(x * v, sxy, cxy)
        sx2, cx2 = gomath.kahan_inc(x * x, sx2, cx2)
    if const:
        if math.isinf(init):
            return NAN, NAN
        return 0.0, init
    sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = gomath.div(cov, var)
    intercept = sy / n - slope * sx / n
    return slope, intercept


def _deriv(ts, vs, _start, _end, _now, _args):
    if len(vs) < 2:
        return None
    return linear_regression(ts, vs, ts[0])[0]


def _predict_linear(ts, vs, _start, _end, now, args):
    if len(vs) < 2:
        return None
    slope, intercept = linear_regression(ts, vs, now)
    return slope * args[0] + intercept


def _resets(ts, vs, *_):
    return float(sum(1 for a, b in zip(vs, vs[1:], strict=False) if b < a))


def _changes(ts, vs, *_):
    return float(sum(1 for a, b in zip(vs, vs[1:], strict=False)
                     if b != a and not (math.isnan(a) and math.isnan(b))))


def _avg(ts, vs, *_):
    mean = c = count = 0.0
    for v in vs:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        mean, c = gomath.kahan_inc(v / count - mean / count, mean, c)
    return mean if math.isinf(mean) else mean + c


def _sum(ts, vs, *_):
    total = c = 0.0
    for v in vs:
        total, c = gomath.kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def _max(ts, vs, *_):
    m = vs[0]
    for v in vs:
        if v > m or math.isnan(m):
            m = v
    return m


def _min(ts, vs, *_):
    m = vs[0]
    for v in vs:
        if v < m or math.isnan(m):
            m = v
    return m


def _variance(vs: Sequence[float]) -> float:
    count = mean = cmean = aux = caux = 0.0
    for v in vs:
        count += 1
        delta = v - (mean + cmean)
        mean, cmean = gomath.kahan_inc(delta / count, mean, cmean)
        aux, caux = gomath.kahan_inc(delta * (v - (mean + cmean)), aux, caux)
    return (aux + caux) / count


def _quantile_over_time(ts, vs, _start, _end, _now, args):
    return quantile(args[0], list(vs))


RANGE_FUNCTIONS: dict[str, RangeFn] = {
    "rate": _extrapolated(True, True),
    "increase": _extrapolated(True, False),
    "delta": _extrapolated(False, False),
    "irate": _instant_value(True),
    "idelta": _instant_value(False),
    "deriv": _deriv,
    "predict_linear": _predict_linear,
    "resets": _resets,
    "changes": _changes,
    "avg_over_time": _avg,
    "sum_over_time": _sum,
    "min_over_time": _min,
    "max_over_time": _max,
    "count_over_time": lambda ts, vs, *_: float(len(vs)),
    "last_over_time": lambda ts, vs, *_: vs[-1],
    "present_over_time": lambda *_: 1.0,
    "absent_over_time": lambda *_: 1.0,  # the engine inverts presence
    "stddev_over_time": lambda ts, vs, *_: math.sqrt(_variance(vs)) if _variance(vs) >= 0 else NAN,
    "stdvar_over_time": lambda ts, vs, *_: _variance(vs),
    "quantile_over_time": _quantile_over_time,
}
# Where the range vector is among a function's arguments (the others are scalars).
RANGE_ARG = {"quantile_over_time": 1}


def quantile(q: float, values: list[float]) -> float:
    """Prometheus's quantile of values (aggregation and quantile_over_time)."""
    if not values or math.isnan(q):
        return NAN
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    values = sorted(values, key=_nan_first)
    n = float(len(values))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return values[int(lower)] * (1 - weight) + values[int(upper)] * weight


def _nan_first(v: float) -> tuple[int, float]:
    return (0, 0.0) if math.isnan(v) else (1, v)


def _round(v: float, args: Sequence[float]) -> float:
    to_nearest = args[0] if args else 1.0
    inverse = gomath.div(1.0, to_nearest)
    return gomath.div(gomath.floor(v * inverse + 0.5), inverse)


def _sgn(v: float) -> float:
    return -1.0 if v < 0 else 1.0 if v > 0 else v


def _clamp(v: float, args: Sequence[float]) -> float:
    return _go_max(args[0], _go_min(args[1], v))


def _go_max(a: float, b: float) -> float:
    if math.isinf(a) and a > 0 or math.isinf(b) and b > 0:
        return math.inf
    if math.isnan(a) or math.isnan(b):
        return NAN
    return max(a, b)


def _go_min(a: float, b: float) -> float:
    if math.isinf(a) and a < 0 or math.isinf(b) and b < 0:
        return -math.inf
    if math.isnan(a) or math.isnan(b):
        return NAN
    return min(a, b)


def _simple(fn: Callable[[float], float]) -> Callable[[float, Sequence[float]], float]:
    return lambda v, _args: fn(v)


# Functions of one value (and scalar arguments); each drops the metric name.
VALUE_FUNCTIONS: dict[str, Callable[[float, Sequence[float]], float]] = {
    "abs": _simple(abs),
    "ceil": _simple(gomath.ceil),
    "floor": _simple(gomath.floor),
    "exp": _simple(gomath.exp),
    "sqrt": _simple(gomath.sqrt),
    "ln": _simple(gomath.ln),
    "log2": _simple(gomath.log2),
    "log10": _simple(gomath.log10),
    "sin": _simple(gomath.sin),
    "cos": _simple(gomath.cos),
    "tan": _simple(gomath.tan),
    "asin": _simple(gomath.asin),
    "acos": _simple(gomath.acos),
    "atan": _simple(gomath.atan),
    "sinh": _simple(gomath.sinh),
    "cosh": _simple(gomath.cosh),
    "tanh": _simple(gomath.tanh),
    "asinh": _simple(gomath.asinh),
    "acosh": _simple(gomath.acosh),
    "atanh": _simple(gomath.atanh),
    "rad": _simple(lambda v: v * math.pi / 180),
    "deg": _simple(lambda v: v * 180 / math.pi),
    "sgn": _simple(_sgn),
    "round": _round,
    "clamp_max": lambda v, a: _go_min(a[0], v),
    "clamp_min": lambda v, a: _go_max(a[0], v),
    "clamp": _clamp,
}


def _date(fn: Callable[[datetime], float]) -> Callable[[float], float]:
    def at(seconds: float) -> float:
        if not math.isfinite(seconds):
            return NAN
        return fn(datetime.fromtimestamp(int(seconds), UTC))
    return at


DATE_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "day_of_month": _date(lambda t: float(t.day)),
    "day_of_week": _date(lambda t: float((t.weekday() + 1) % 7)),
    "day_of_year": _date(lambda t: float(t.timetuple().tm_yday)),
    "days_in_month": _date(lambda t: float(calendar.monthrange(t.year, t.month)[1])),
    "hour": _date(lambda t: float(t.hour)),
    "minute": _date(lambda t: float(t.minute)),
    "month": _date(lambda t: float(t.month)),
    "year": _date(lambda t: float(t.year)),
}


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Quantile ``q`` of classic histogram buckets (upper bound, cumulative count),
    as Prometheus's bucketQuantile."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(buckets[-1][0]) or buckets[-1][0] < 0:
        return NAN
    merged: list[list[float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    top = merged[0][1]
    for b in merged[1:]:
        if b[1] > top:
            top = b[1]
        elif b[1] < top:
            b[1] = top
    if len(merged) < 2:
        return NAN
    observations = merged[-1][1]
    if observations == 0:
        return NAN
    rank = q * observations
    b = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def parse_bound(text: str) -> float | None:
    """An ``le`` label as Go's strconv.ParseFloat reads it (None: not a number)."""
    if not text or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def check_label_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadQuery(f"invalid {where} label name in {where.split()[-1] if ' ' in where else where}: {name}")


def compile_regex(text: str, function: str) -> re.Pattern[str]:
    """A regular expression of label_replace, anchored as Prometheus anchors it."""
    try:
        return re.compile("^(?:" + text + ")$", re.DOTALL)
    except re.error:
        raise ExecutionError(f"invalid regular expression in {function}(): {text}") from None


def expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``; a
    reference to a group that does not exist expands to nothing."""
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i < n and template[i] == "$":
            out.append("$")
            i += 1
            continue
        if i < n and template[i] == "{":
            close = template.find("}", i)
            name = template[i + 1:close] if close > 0 else ""
            if not name or not _word(name):
                out.append("$")
                continue
            i = close + 1
        else:
            j = i
            while j < n and (template[j].isascii() and (template[j].isalnum() or template[j] == "_")):
                j += 1
            if j == i:
                out.append("$")
                continue
            name, i = template[i:j], j
        out.append(_group(match, name))
    return "".join(out)


def _word(name: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c == "_") for c in name)


def _group(match: re.Match[str], name: str) -> str:
    if name.isdigit():
        index = int(name)
        if index > match.re.groups:
            return ""
        return match.group(index) or ""
    if name in match.re.groupindex:
        return match.group(name) or ""
    return ""
