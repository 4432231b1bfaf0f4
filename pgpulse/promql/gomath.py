"""Floating-point operations with Go's results where Python raises instead.

Prometheus is written in Go, whose math functions answer NaN or ±Inf for arguments
outside their domain (log of a negative, 1/0, an overflow), where Python raises.
PromQL's answers follow Go's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

INF = math.inf
NAN = math.nan


def div(x: float, y: float) -> float:
    try:
        return x / y
    except ZeroDivisionError:
        if math.isnan(x) or x == 0:
            return NAN
        return math.copysign(INF, x) * math.copysign(1.0, y)


def mod(x: float, y: float) -> float:
    try:
        return math.fmod(x, y)
    except ValueError:
        return NAN


def _odd_int(y: float) -> bool:
    return math.isfinite(y) and y == int(y) and int(y) % 2 == 1


def pow(x: float, y: float) -> float:  # noqa: A001 - Go's name
    try:
        return math.pow(x, y)
    except OverflowError:
        return -INF if x < 0 and _odd_int(y) else INF
    except ValueError:
        if x == 0:  # and y < 0
            return math.copysign(INF, x) if _odd_int(y) else INF
        return NAN


def floor(x: float) -> float:
    return x if not math.isfinite(x) or x == 0 else float(math.floor(x))


def ceil(x: float) -> float:
    return x if not math.isfinite(x) or x == 0 else float(math.ceil(x))


def _log_of(fn: Callable[[float], float]) -> Callable[[float], float]:
    def log(x: float) -> float:
        if math.isnan(x) or x < 0:
            return NAN
        if x == 0:
            return -INF
        if math.isinf(x):
            return INF
        return fn(x)
    return log


ln = _log_of(math.log)
log2 = _log_of(math.log2)
log10 = _log_of(math.log10)


def sqrt(x: float) -> float:
    return NAN if x < 0 else math.sqrt(x)


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _nan_outside(fn: Callable[[float], float]) -> Callable[[float], float]:
    def safe(x: float) -> float:
        try:
            return fn(x)
        except ValueError:
            return NAN
    return safe


def _hyper(fn: Callable[[float], float], even: bool) -> Callable[[float], float]:
    def safe(x: float) -> float:
        try:
            return fn(x)
        except OverflowError:
            return INF if even or x > 0 else -INF
    return safe


def atanh(x: float) -> float:
    if x == 1:
        return INF
    if x == -1:
        return -INF
    if math.isnan(x) or abs(x) > 1:
        return NAN
    return math.atanh(x)


sin = _nan_outside(math.sin)
cos = _nan_outside(math.cos)
tan = _nan_outside(math.tan)
asin = _nan_outside(math.asin)
acos = _nan_outside(math.acos)
atan = math.atan
sinh = _hyper(math.sinh, False)
cosh = _hyper(math.cosh, True)
tanh = math.tanh
asinh = math.asinh
acosh = _nan_outside(math.acosh)
atan2 = math.atan2


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """Go's kahanSumInc (Neumaier's variant), as Prometheus sums over time."""
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c
