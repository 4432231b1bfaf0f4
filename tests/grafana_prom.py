"""What Grafana's Prometheus data source sends for a panel's PromQL, and how.

The counterpart of ``grafana_sql.py`` for the ``prometheus`` data source type, in
Grafana's order:

1. The frontend replaces template variables (``$var``, ``${var}``, ``[[var]]``) with
   Prometheus's formatting (``interpolateQueryExpr`` in
   ``public/app/plugins/datasource/prometheus/datasource.ts``): a single value is
   escaped for a quoted string; a multi-value or include-all variable becomes a
   regular expression, each value regex-escaped, ``(a|b)`` for several; "All" is the
   variable's ``allValue`` when it has one, unescaped. ``$__interval`` and
   ``$__interval_ms`` are left for the backend.
2. The backend (``pkg/promlib/models/query.go``) computes the step: the frontend's
   interval (the range over the panel's points, rounded, at least the data source's
   ``timeInterval``), raised to the range over 11,000 (``safeResolution``); then
   replaces ``$__interval``, ``$__interval_ms``, ``$__range``, ``$__range_s``,
   ``$__range_ms``, ``$__rate_interval`` (the interval plus one scrape interval, at
   least four of them, written as Go writes a duration: ``2m10s``) and
   ``$__rate_interval_ms``.
3. It asks ``/api/v1/query_range`` with start and end rounded down to a multiple of
   the step (``AlignTimeRange``), or ``/api/v1/query`` at the unaligned end for an
   instant query; the data source's ``httpMethod`` (POST: a form body) and its
   custom headers (``httpHeaderName1`` / ``secureJsonData.httpHeaderValue1``).

Query variables ``label_values(label)`` and ``label_values(selector, label)`` are
answered by ``/api/v1/label/<label>/values`` (with ``match[]`` for a selector) over
the dashboard's range, then filtered and captured by the variable's regex, sorted.
"""

from __future__ import annotations

import re

from grafana_sql import VARIABLE_RE, TimeRange, Variable, calculate_interval, interval_to_ms

SAFE_RESOLUTION = 11_000  # Grafana's cap on points per series


# -- step 2: the backend's step and built-in variables ------------------------------------


def go_round_interval(ms: float) -> int:
    """``roundInterval`` of Grafana's Go interval calculator (``<=``, where the
    frontend's has ``<``)."""
    table = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
             (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
             (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
             (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
             (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
             (1814400000, 604800000)]
    for upto, use in table:
        if ms <= upto:
            return use
    return 2592000000 if ms < 3628800000 else 31536000000


def format_interval(ms: int) -> str:
    """Go's ``gtime.FormatInterval``: the largest whole unit only."""
    for unit, size in (("y", 31536000000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def go_duration(ms: int) -> str:
    """Go's ``time.Duration.String()`` of whole milliseconds: ``30m10s``, ``1h0m0s``, ``40s``."""
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3600000)
    minutes, rest = divmod(rest, 60000)
    seconds = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


class Query:
    """One panel query as Grafana sends it: its step and its expression with every
    variable replaced."""

    def __init__(self, expr: str, time_range: TimeRange, variables: dict[str, Variable], *,
                 time_interval: str, max_data_points: int = 1000) -> None:
        _, interval_ms = calculate_interval(time_range, max_data_points, time_interval)  # the frontend's
        range_ms = time_range.ms
        calculated = interval_ms if range_ms / max_data_points < interval_ms else go_round_interval(
            range_ms / max_data_points)
        self.step_ms = max(calculated, go_round_interval(range_ms / SAFE_RESOLUTION))
        scrape_ms = interval_to_ms(time_interval or "15s")
        rate_ms = max(interval_ms + scrape_ms, 4 * scrape_ms)
        range_s = round(range_ms / 1000)
        text = interpolate(expr, variables)
        for name, value in (("$__interval_ms", str(self.step_ms)), ("$__interval", format_interval(self.step_ms)),
                            ("$__range_ms", str(range_ms)), ("$__range_s", str(range_s)),
                            ("$__range", f"{range_s}s"), ("$__rate_interval_ms", str(rate_ms)),
                            ("$__rate_interval", go_duration(rate_ms))):
            text = text.replace(name, value).replace("${" + name[1:] + "}", value)
        self.expr = text
        self.time_range = time_range

    def range_params(self) -> dict[str, str]:
        step_s = self.step_ms / 1000

        def aligned(t) -> str:
            return _go_float(int(t.timestamp() // step_s * step_s) if step_s >= 1 else t.timestamp())

        return {"query": self.expr, "start": aligned(self.time_range.start), "end": aligned(self.time_range.end),
                "step": _go_float(step_s)}

    def instant_params(self) -> dict[str, str]:
        return {"query": self.expr, "time": _go_float(self.time_range.end.timestamp())}


def _go_float(x: float) -> str:
    """``strconv.FormatFloat(x, 'f', -1, 64)``: no exponent, shortest digits."""
    text = repr(float(x))
    if "e" in text or "E" in text:
        text = f"{x:f}".rstrip("0").rstrip(".")
    return text.removesuffix(".0")


# -- step 1: template variables -------------------------------------------------------------


def regular_escape(value: str) -> str:
    """``prometheusRegularEscape``: for a value inside a quoted string."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'").replace('"', '\\"')


def regex_escape(value: str) -> str:
    """``prometheusSpecialRegexEscape``: for a value inside a quoted regular expression."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def _format(var: Variable) -> str:
    if not var.multi and not var.include_all:
        return regular_escape(var.value if isinstance(var.value, str) else var.value[0])
    if isinstance(var.value, str):  # "All" with an allValue: Grafana leaves it as written
        return var.value
    escaped = [regex_escape(v) for v in var.value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(expr: str, variables: dict[str, Variable]) -> str:
    """The frontend's replacement of dashboard variables (built-ins are left)."""

    def replace(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        var = variables.get(name)
        return m.group(0) if var is None else _format(var)

    return VARIABLE_RE.sub(replace, expr)


# -- query variables --------------------------------------------------------------------------

LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def label_values_request(query: str, variables: dict[str, Variable]) -> tuple[str, dict[str, str]]:
    """(path, parameters without the range) of a ``label_values(...)`` variable query."""
    m = LABEL_VALUES.match(query)
    if not m:
        raise ValueError(f"variable query not emulated: {query}")
    selector, label = m.group(1), m.group(2)
    params = {"match[]": interpolate(selector, variables)} if selector else {}
    return f"/api/v1/label/{label}/values", params


def variable_options(values: list[str], regex: str) -> list[str]:
    """The variable's regex applied as Grafana does (``/re/``: keep matches, use the
    first capture group when there is one), then sorted alphabetically, distinct."""
    if regex:
        pattern = re.compile(regex.strip("/"))
        kept = []
        for v in values:
            m = pattern.search(v)
            if m:
                kept.append(m.group(1) if m.groups() else v)
        values = kept
    return sorted(set(values))


def chosen(var: dict, options: list[str]) -> Variable:
    """What a dashboard opened for the first time selects: All where offered (its
    allValue when it has one), else the first option."""
    multi, include_all = bool(var.get("multi")), bool(var.get("includeAll"))
    if include_all:
        return Variable(var["name"], var["allValue"] if var.get("allValue") else options, multi, True)
    assert options, f"variable {var['name']} has no values"
    return Variable(var["name"], [options[0]] if multi else options[0], multi, False)
