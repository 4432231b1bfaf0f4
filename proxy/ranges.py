"""Query parameters shared by the read views (query, hosts, export, discovery): range,
step, aggregation, grouping, selectors, integers, and the limits on them (each a
clear 400 naming the parameter)."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta

from flask import request

from pgpulse.reads import AGGREGATES
from pgpulse.selector import Selector, SelectorError, parse
from pgpulse.store.series_reads import SeriesRow, find_series
from proxy.errors import bad_request
from proxy.settings import ProxySettings
from proxy.timeparse import parse_duration, parse_time

# Steps the automatic choice rounds up to.
NICE_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
AUTO_POINTS = 500  # about how many points an automatic step gives
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DEFAULT_RANGE = timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    step: timedelta

    @property
    def steps(self) -> int:
        return math.ceil((self.end - self.start) / self.step)


def time_range(settings: ProxySettings, *, need_step: bool = True) -> Range:
    """start/end (RFC 3339 or Unix seconds; default: the last hour) and step."""
    args = request.args
    end = parse_time(args["end"], "end") if args.get("end") else datetime.now(UTC)
    start = parse_time(args["start"], "start") if args.get("start") else end - DEFAULT_RANGE
    if end <= start:
        raise bad_request("end must be after start", parameter="end")
    span = end - start
    limit = timedelta(days=settings.max_range_days)
    if span > limit:
        raise bad_request(f"range longer than {settings.max_range_days} days", parameter="start",
                          limit_days=settings.max_range_days)
    if args.get("step"):
        step = parse_duration(args["step"], "step")
    else:
        wanted = span.total_seconds() / AUTO_POINTS
        step = timedelta(seconds=next((s for s in NICE_STEPS if s >= wanted), NICE_STEPS[-1]))
    rng = Range(start, end, step)
    if need_step and rng.steps > settings.max_points_per_series:
        raise bad_request(
            f"{rng.steps} steps in the range; the limit is {settings.max_points_per_series}: "
            "use a larger step or a shorter range",
            parameter="step", steps=rng.steps, limit=settings.max_points_per_series,
        )
    return rng


def selector(name: str = "query", *, required: bool = True) -> Selector | None:
    """The selector in parameter ``name`` (None when absent and not ``required``)."""
    raw = request.args.get(name)
    if not required and (raw is None or not raw.strip()):
        return None
    try:
        return parse(raw)
    except SelectorError as exc:
        details = {} if exc.position is None else {"position": exc.position}
        raise bad_request(f"{name}: {exc.message}", parameter=name, **details) from None


def integer(name: str, default: int, low: int, high: int) -> int:
    """An integer parameter in [low, high]; any other text (also a number of any
    size beyond the bounds) is a 400 that echoes at most 100 characters of it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    # Checked as text first: int() of a huge string is slow, and the answer is the same.
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18 \
            or not low <= int(text) <= high:
        raise bad_request(f"{name}: expected an integer {low}..{high}", parameter=name,
                          value=raw[:100])
    return int(text)


def host_list() -> list[str] | None:
    """The ``host`` parameters (repeatable; None: all hosts)."""
    hosts = [h for h in request.args.getlist("host") if h] or None
    for h in hosts or ():
        if "\x00" in h:
            raise bad_request("host: contains a NUL character", parameter="host")
    return hosts


def aggregate() -> str:
    agg = (request.args.get("agg") or "avg").strip().lower()
    if agg not in AGGREGATES:
        raise bad_request(f"agg: expected one of {', '.join(AGGREGATES)}", parameter="agg",
                          value=agg[:50])
    return agg


def group_by() -> tuple[str, ...] | None:
    raw = request.args.get("by")
    if raw is None:
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not _LABEL.fullmatch(name) or len(name) > 100:
            raise bad_request(f"by: {name[:50]!r} is not a label name", parameter="by")
    if len(names) != len(set(names)):
        raise bad_request("by: a label is named twice", parameter="by")
    return names


def check_points(series: int, rng: Range, settings: ProxySettings) -> None:
    total = series * rng.steps
    if total > settings.max_points:
        raise bad_request(
            f"the answer would hold up to {total} points ({series} series x {rng.steps} steps); "
            f"the limit is {settings.max_points}: narrow the selector, shorten the range or "
            "use a larger step",
            points=total, limit=settings.max_points, series=series, steps=rng.steps,
        )


def matched_series(conn, settings: ProxySettings, found_for: Selector, *, tenant: str) -> list[SeriesRow]:
    """The series of ``tenant`` that ``found_for`` (the ``query`` parameter's selector)
    matches; a 400 when they are more than PROXY_MAX_QUERY_SERIES."""
    found = find_series(conn, found_for, settings.max_query_series, tenant=tenant)
    if len(found) > settings.max_query_series:
        raise bad_request(f"the selector matches more than {settings.max_query_series} series",
                          parameter="query", limit=settings.max_query_series)
    return found


def no_match_warning(selector_text: str) -> str:
    """The ``warnings`` entry of an answer whose selector matched no series."""
    return f"the selector {selector_text[:200]!r} matches no series"
