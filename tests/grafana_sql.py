"""What Grafana does to a PostgreSQL panel's SQL before the database sees it.

Two steps, in Grafana's order:

1. The frontend replaces template variables (``$var``, ``${var}``, ``${var:format}``,
   ``[[var]]``) and the built-ins ``$__interval``, ``$__interval_ms``, ``$__range``,
   ``$__range_s``, ``$__range_ms``, ``$__from``, ``$__to``. A SQL data source formats
   values its own way: a multi-value or include-all variable becomes a list of quoted
   literals (``'a','b'``), a single value has its quotes doubled (the query writes
   ``'$var'``).
2. The backend expands the macros of the PostgreSQL data source, ported from
   Grafana's ``pkg/tsdb/grafana-postgresql-datasource/macros.go``: ``$__time``,
   ``$__timeEpoch``, ``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``,
   ``$__timeGroup``, ``$__timeGroupAlias``, ``$__unixEpochFilter``,
   ``$__unixEpochNanoFilter``, ``$__unixEpochNanoFrom/To``, ``$__unixEpochGroup``,
   ``$__unixEpochGroupAlias``; an unknown macro is an error, as in Grafana.

``$__interval`` comes from the time range and the panel's width in points like
Grafana's ``rangeutil.calculateInterval`` (rounded with ``roundInterval``, raised to
the data source's minimum interval).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

# Grafana's template variable syntax (public/app/features/variables/utils.ts).
VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
# The backend's macro syntax: $name(args), args without ')'.
MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown, or bad arguments)."""


@dataclasses.dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> TimeRange:
        end = (now or datetime.now(UTC)).replace(microsecond=0)
        return cls(end - span, end)

    @property
    def ms(self) -> int:
        return int((self.end - self.start).total_seconds() * 1000)


# -- $__interval ----------------------------------------------------------------------

_ROUND = [  # (below ms, use ms): Grafana's roundInterval
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000),
    (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000),
    (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
]


def round_interval(ms: float) -> int:
    for below, use in _ROUND:
        if ms < below:
            return use
    return 31536000000


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
             "w": 604_800_000, "M": 2_592_000_000, "y": 31_536_000_000}


def interval_to_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)", text.strip())
    if not m:
        raise MacroError(f"error parsing interval {text}")
    return int(float(m.group(1)) * _UNITS_MS[m.group(2)])


def seconds_to_hms(seconds: float) -> str:
    """Grafana's rangeutil.secondsToHms: the largest whole unit only."""
    parts = (
        (int(seconds // 31536000), "y"),
        (int(seconds % 31536000 // 86400), "d"),
        (int(seconds % 31536000 % 86400 // 3600), "h"),
        (int(seconds % 31536000 % 86400 % 3600 // 60), "m"),
        (int(seconds % 31536000 % 86400 % 3600 % 60), "s"),
        (int(seconds * 1000), "ms"),
    )
    for whole, unit in parts:
        if whole:
            return f"{whole}{unit}"
    return "less than a millisecond"


def calculate_interval(time_range: TimeRange, max_data_points: int = 1000,
                       min_interval: str | None = None) -> tuple[str, int]:
    """($__interval, $__interval_ms) for a panel ``max_data_points`` wide."""
    ms = round_interval(time_range.ms / max_data_points)
    if min_interval:
        ms = max(ms, interval_to_ms(min_interval))
    return seconds_to_hms(ms / 1000), ms


# -- step 1: template variables ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variable:
    name: str
    value: str | list[str]
    multi: bool = False
    include_all: bool = False


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _format(value: str | list[str], var: Variable | None, fmt: str | None) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt == "csv":
        return ",".join(values)
    if fmt == "raw":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join(_quote(v) for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt is not None:
        raise MacroError(f"format {fmt!r} not emulated")
    if var is None:  # a built-in
        return str(value)
    if isinstance(value, list) or var.multi or var.include_all:
        return ",".join(_quote(v) for v in values)
    return value.replace("'", "''")


def builtins(time_range: TimeRange, interval: str, interval_ms: int) -> dict[str, str]:
    return {
        "__interval": interval,
        "__interval_ms": str(interval_ms),
        "__range": seconds_to_hms(time_range.ms / 1000),
        "__range_s": str(time_range.ms // 1000),
        "__range_ms": str(time_range.ms),
        "__from": str(int(time_range.start.timestamp() * 1000)),
        "__to": str(int(time_range.end.timestamp() * 1000)),
    }


def interpolate(sql: str, variables: dict[str, Variable], built: dict[str, str]) -> str:
    """Replace template variables the way Grafana's SQL data sources do."""

    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name in built:
            return _format(built[name], None, fmt)
        var = variables.get(name)
        if var is None:
            return m.group(0)  # not a variable: a macro, or text Grafana leaves alone
        return _format(var.value, var, fmt)

    return VARIABLE_RE.sub(replace, sql)


# -- step 2: macros ---------------------------------------------------------------------


def rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: trailing zeros of the fraction dropped."""
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += ("." + f"{t.microsecond:06d}").rstrip("0")
    return text + "Z"


def go_float(x: float) -> str:
    """Go's %v of a float64: strconv 'g' with the shortest digits, in exponent
    form when the decimal exponent is below -4 or at least 6 ("1e+06")."""
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(x))).normalize().as_tuple()
    mantissa = "".join(map(str, digits))
    exp = len(mantissa) + exponent - 1  # decimal exponent of the first digit
    text_sign = "-" if sign else ""
    if exp < -4 or exp >= 6:
        body = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{text_sign}{body}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if exponent >= 0:
        return text_sign + mantissa + "0" * exponent
    point = len(mantissa) + exponent
    if point > 0:
        return text_sign + mantissa[:point] + "." + mantissa[point:]
    return text_sign + "0." + "0" * (-point) + mantissa


def _seconds(ms: int) -> float:
    return ms / 1000


def _macro(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    start, end = time_range.start, time_range.end
    if name == "__time":
        if not args or not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        if not args or not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        if not args or not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return f"{args[0]} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339nano(start)}'"
    if name == "__timeTo":
        return f"'{rfc3339nano(end)}'"
    if name in ("__timeGroup", "__unixEpochGroup"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        seconds = _seconds(interval_to_ms(args[1].strip("'")))
        if name == "__unixEpochGroup":
            return f"floor(({args[0]})/{go_float(seconds)})*{go_float(seconds)}"
        if timescaledb:
            return f"time_bucket('{seconds:.3f}s',{args[0]})"
        return f"floor(extract(epoch from {args[0]})/{go_float(seconds)})*{go_float(seconds)}"
    if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
        return _macro(name.removesuffix("Alias"), args, time_range, timescaledb) + ' AS "time"'
    if name == "__unixEpochFilter":
        if not args or not args[0]:
            raise MacroError(f"missing time column argument for macro {name}")
        return (f"{args[0]} >= {int(start.timestamp())} AND {args[0]} <= {int(end.timestamp())}")
    if name == "__unixEpochNanoFilter":
        return (f"{args[0]} >= {int(start.timestamp() * 1e9)} AND {args[0]} <= {int(end.timestamp() * 1e9)}")
    if name == "__unixEpochNanoFrom":
        return str(int(start.timestamp() * 1e9))
    if name == "__unixEpochNanoTo":
        return str(int(end.timestamp() * 1e9))
    raise MacroError(f"unknown macro {name!r}")


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool = False) -> str:
    """Expand the PostgreSQL data source's macros like Grafana's backend."""

    def replace(m: re.Match) -> str:
        name = m.group(1)
        # Grafana: "$__timeGroup(...)," is the pre-5.3 form that also aliases.
        if name == "__timeGroup":
            index = sql.find(m.group(0))
            after = index + len(m.group(0))
            if index >= 0 and after < len(sql) and sql[after] == ",":
                name = "__timeGroupAlias"
        args = [a.strip(" ") for a in m.group(2).split(",")]
        return _macro(name, args, time_range, timescaledb)

    return MACRO_RE.sub(replace, sql)


def render(sql: str, time_range: TimeRange, variables: dict[str, Variable], *,
           max_data_points: int = 1000, min_interval: str | None = None,
           timescaledb: bool = False) -> str:
    """Both steps: the SQL the database receives."""
    interval, interval_ms = calculate_interval(time_range, max_data_points, min_interval)
    text = interpolate(sql, variables, builtins(time_range, interval, interval_ms))
    return expand_macros(text, time_range, timescaledb=timescaledb)
