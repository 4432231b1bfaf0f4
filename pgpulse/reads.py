"""Tier-aware reads: one function per kind of data, whichever tier serves it.

For a time range and a step, :func:`pgpulse.tiers.choose` picks the tier (the
coarsest one not wider than the step). Where the range reaches further back than
that tier keeps data, the older part is served by the next coarser tier that still
has it, and the parts are stitched at hour boundaries, so a point is never counted
twice. The result has one shape whichever tiers served it. The SQL of every
aggregate over a tier comes from the tier registry (``pgpulse.tiers``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from pgpulse import tiers
from pgpulse.promql import native
from pgpulse.store.tier_reads import tier_rows
from pgpulse.tiers import AGGREGATES, EPOCH, HOST_FIELDS, Retention

__all__ = ["AGGREGATES", "ReadError", "ReadResult", "Segment", "plan", "read_host_field", "read_series"]

HOUR = timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)
MILLISECOND = timedelta(milliseconds=1)


class ReadError(ValueError):
    """A read asked for something that does not exist (unknown field, aggregate)."""


@dataclasses.dataclass(frozen=True)
class Segment:
    tier: str
    start: datetime
    end: datetime


@dataclasses.dataclass
class ReadResult:
    """Points per key (series id, or host) and the tiers that served them."""

    tier: str  # the tier serving the newest part of the range
    segments: list[Segment]
    points: dict[object, list[tuple[datetime, float]]]


def _ceil_hour(t: datetime) -> datetime:
    floored = EPOCH + ((t - EPOCH) // HOUR) * HOUR
    return floored if floored == t else floored + HOUR


def plan(start: datetime, end: datetime, step: timedelta, retention: Retention, now: datetime) -> list[Segment]:
    """The tiers that serve [start, end), oldest part first."""
    if end <= start:
        return []
    segments: list[Segment] = []
    upper = end
    t: tiers.Tier | None = tiers.choose(step)
    while t is not None:
        coarsest = tiers.coarser(t) is None
        lower = start if coarsest else max(start, _ceil_hour(now - retention.of(t.name)))
        if lower < upper:
            segments.append(Segment(t.name, lower, upper))
            upper = lower
        if upper <= start:
            break
        t = tiers.coarser(t)
    return list(reversed(segments))


def _agg(agg: str, tier_name: str, value: sql.Composable | None = None, prefix: str = "") -> sql.Composable:
    """The SQL that aggregates one step bucket in ``tier_name``: of ``value`` (raw), or
    of the rolled-up columns named ``prefix`` + count/sum/... (rolled-up tiers)."""
    t = tiers.tier(tier_name)
    # The registry's text with its placeholders turned into composed identifiers.
    if t.raw:
        template = t.aggregate(agg, value="{value}", time="{time}")
        return sql.SQL(template).format(value=value, time=sql.Identifier(t.time_column))
    names = {c: "{" + c + "}" for c in tiers.ROLLUP_COLUMNS}
    template = tiers.ROLLED_UP_AGGREGATES[agg].format(time="{time}", **names)
    return sql.SQL(template).format(
        time=sql.Identifier(t.time_column),
        **{c: sql.Identifier(prefix + c) for c in tiers.ROLLUP_COLUMNS},
    )


# One rolled-up row's own aggregate: what ROLLED_UP_AGGREGATES gives over a bucket
# holding exactly that row (sum of one value is the value, avg is sum / count, ...),
# so reading a tier at its own width needs no GROUP BY.
ROW_AGGREGATES: dict[str, str] = {
    "avg": "{sum} / nullif({count}, 0)",
    "min": "{min}",
    "max": "{max}",
    "sum": "{sum}",
    "count": "{count}::double precision",
    "last": "CASE WHEN {count} > 0 THEN {last} END",
}


def _row_agg(agg: str, prefix: str = "") -> sql.Composable:
    return sql.SQL(ROW_AGGREGATES[agg]).format(
        **{c: sql.Identifier(prefix + c) for c in tiers.ROLLUP_COLUMNS})


def _bucket(column: str, epoch: bool) -> sql.Composable:
    """The step bucket of ``column``: a timestamptz, or Unix seconds when ``epoch``."""
    expr = sql.SQL("date_bin(%(step)s, {}, %(origin)s)").format(sql.Identifier(column))
    return _epoch(expr) if epoch else expr


def _epoch(expr: sql.Composable) -> sql.Composable:
    # date_part gives double precision directly; extract() computes a numeric first.
    return sql.SQL("date_part('epoch', {})").format(expr)


def _tier_query(conn, family: str, seg: Segment, step: timedelta, agg: str, key: str, prefix: str,
                where: sql.Composable, epoch: bool) -> tuple[sql.Composable, dict[str, object]]:
    """The points of a rolled-up segment: its rows as they are when the step is the
    tier's width (buckets and steps share the origin), else regrouped per step."""
    field = prefix[:-1] if family == "hosts" else None
    rows, params = tier_rows(conn, family, seg.tier, seg.start, seg.end, field)
    filters = sql.SQL("bucket >= %(start)s AND bucket < %(end)s {}").format(where)
    if step == tiers.tier(seg.tier).width:
        t = _epoch(sql.Identifier("bucket")) if epoch else sql.Identifier("bucket")
        # Ordered by the key and bucket themselves: the index's order, so no sort.
        query = sql.SQL("SELECT {key}, {t} AS t, {agg} FROM {rows} WHERE {filters} ORDER BY 1, bucket").format(
            key=sql.Identifier(key), t=t, agg=_row_agg(agg, prefix), rows=rows, filters=filters)
    else:
        query = sql.SQL("SELECT {key}, {t} AS t, {agg} FROM {rows} WHERE {filters} GROUP BY 1, 2 ORDER BY 1, 2").format(
            key=sql.Identifier(key), t=_bucket("bucket", epoch), agg=_agg(agg, seg.tier, prefix=prefix),
            rows=rows, filters=filters)
    return query, params


def _read_rate(conn: psycopg.Connection, series_ids: Sequence[int], start: datetime, end: datetime,
               step: timedelta, epoch: bool) -> ReadResult:
    """Counter rate of ``series_ids``: PromQL's ``rate(x[step])`` at every multiple of
    ``step`` in [start, end], as the PromQL engine evaluates it (windows
    ``[T - step, T]``, millisecond times; :mod:`pgpulse.promql.native`).

    The rollups keep count, sum, min, max and last per bucket: not the first sample,
    its time, nor the resets inside a bucket, which a rate needs. So whatever the
    step, the rate is computed from the raw samples, and never differs from raw.
    Past the raw retention there is nothing to read, so no points.
    """
    step_us = step // MICROSECOND
    if step_us <= 0 or step_us % 1000:
        raise ReadError("a rate's step must be a whole number of milliseconds")
    start_ms = -(-((start - EPOCH) // MICROSECOND) // 1000)
    end_ms = ((end - EPOCH) // MICROSECOND) // 1000
    found = native.per_step(conn, "rate", series_ids, start_ms, end_ms, step_us // 1000)
    points: dict[object, list[tuple[datetime, float]]] = {
        sid: [(t / 1000 if epoch else EPOCH + t * MILLISECOND, v) for t, v in values]
        for sid, values in found.items()}
    return ReadResult("raw", [Segment("raw", start, end)], points)


def _run(conn, segments, step, agg, query_for, params) -> dict[object, list[tuple[datetime, float]]]:
    points: dict[object, list[tuple[datetime, float]]] = {}
    for seg in segments:
        query, extra = query_for(seg, agg)
        bound = {**params, **extra, "step": step, "origin": EPOCH, "start": seg.start, "end": seg.end}
        # Binary results: thousands of timestamps and floats load several times faster.
        for key, t, v in conn.execute(query, bound, binary=True).fetchall():
            if v is not None:
                points.setdefault(key, []).append((t, float(v)))
    return points


def _check(agg: str, step: timedelta, start: datetime, end: datetime) -> None:
    if agg not in AGGREGATES:
        raise ReadError(f"unknown aggregate {agg!r}: expected one of {', '.join(AGGREGATES)}")
    if step <= timedelta(0):
        raise ReadError("step must be positive")
    if start.tzinfo is None or end.tzinfo is None:
        raise ReadError("start and end must carry a time zone")


def read_series(
    conn: psycopg.Connection,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    step: timedelta,
    agg: str,
    retention: Retention,
    now: datetime | None = None,
    *,
    epoch: bool = False,
) -> ReadResult:
    """Points of ``series_ids`` in [start, end), one per step bucket, keyed by series id.

    With ``epoch`` the points' times are Unix seconds (floats) instead of datetimes,
    computed by the database: what an API that answers in JSON wants, for less work.

    ``rate`` is the exception to buckets and tiers: PromQL's ``rate(x[step])`` at each
    multiple of ``step`` in [start, end], from raw samples (:func:`_read_rate`).
    """
    _check(agg, step, start, end)
    if agg == "rate":
        return _read_rate(conn, series_ids, start, end, step, epoch)
    now = now or datetime.now(UTC)
    segments = plan(start, end, step, retention, now)

    def query_for(seg: Segment, inner: str) -> tuple[sql.Composable, dict[str, object]]:
        if seg.tier == "raw":
            return sql.SQL(
                "SELECT series_id, {t} AS t, {agg} FROM pgpulse_samples(%(ids)s, %(start)s, %(end)s) "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).format(t=_bucket("time", epoch), agg=_agg(inner, "raw", sql.Identifier("value"))), {}
        return _tier_query(conn, "samples", seg, step, inner, "series_id", "",
                           sql.SQL("AND series_id = ANY(%(ids)s)"), epoch)

    points = _run(conn, segments, step, agg, query_for, {"ids": list(series_ids)})
    return ReadResult(segments[-1].tier if segments else tiers.choose(step).name, segments, points)


def read_host_field(
    conn: psycopg.Connection,
    hosts: Sequence[str] | None,
    field: str,
    start: datetime,
    end: datetime,
    step: timedelta,
    agg: str,
    retention: Retention,
    now: datetime | None = None,
    *,
    tenant: str,
    epoch: bool = False,
) -> ReadResult:
    """Points of one headline ``field`` of the host snapshots of ``tenant``, keyed by
    host (``hosts`` None: all the tenant's hosts).

    The host rollups are keyed by host name alone: a rolled-up tier serves the hosts
    that have raw snapshots in the tenant and in no other tenant (a host name two
    tenants share is served from raw data only, never mixed).

    With ``epoch`` the points' times are Unix seconds (floats), as in :func:`read_series`.
    """
    if field not in HOST_FIELDS:
        raise ReadError(f"unknown host field {field!r}: expected one of {', '.join(HOST_FIELDS)}")
    _check(agg, step, start, end)
    if agg == "rate":
        raise ReadError("rate applies to counters; host fields are gauges")
    now = now or datetime.now(UTC)
    segments = plan(start, end, step, retention, now)
    path = list(HOST_FIELDS[field])
    host_filter = sql.SQL("") if hosts is None else sql.SQL("AND host = ANY(%(hosts)s) ")
    tenant_hosts = sql.SQL(
        "AND EXISTS (SELECT 1 FROM system_metrics m WHERE m.tenant_id = %(tenant)s AND m.host = r.host) "
        "AND NOT EXISTS (SELECT 1 FROM system_metrics m WHERE m.tenant_id <> %(tenant)s "
        "AND m.host = r.host) ")

    def query_for(seg: Segment, inner: str) -> tuple[sql.Composable, dict[str, object]]:
        if seg.tier == "raw":
            value = sql.SQL(
                "CASE WHEN jsonb_typeof(data #> %(path)s) = 'number' "
                "THEN (data #>> %(path)s)::double precision END"
            )
            return sql.SQL(
                "SELECT host, {t} AS t, {agg} FROM system_metrics "
                "WHERE tenant_id = %(tenant)s AND time >= %(start)s AND time < %(end)s {hosts}"
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).format(t=_bucket("time", epoch), agg=_agg(inner, "raw", value), hosts=host_filter), {}
        return _tier_query(conn, "hosts", seg, step, inner, "host", field + "_",
                           sql.Composed([host_filter, tenant_hosts]), epoch)

    params = {"path": path, "hosts": list(hosts) if hosts is not None else None, "tenant": tenant}
    points = _run(conn, segments, step, agg, query_for, params)
    return ReadResult(segments[-1].tier if segments else tiers.choose(step).name, segments, points)
