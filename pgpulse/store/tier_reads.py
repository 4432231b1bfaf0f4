"""The rows of a rolled-up tier over a time range, as a FROM item planned for that range.

In portable mode the tier relations (``samples_5m``, ``system_metrics_1h``, ...) are
views: the rollup store below a watermark, UNION ALL the part above it aggregated on
the fly. The views call ``pgpulse_watermark()``, which the planner cannot evaluate,
so the live part keeps every partition of the raw table until run time and planning
grows with the number of partitions (~14 ms for a day's query over a month of
partitions). :func:`tier_rows` reads the watermarks first and gives each part
constant bounds instead, so the planner prunes partitions and skips a part that
cannot hold a row of the range. The rows are the view's rows (of the columns a read
needs): the store's, and the live part made by the registry SQL the rollup runs use
(``pgpulse.tiers.ROLLUP_FROM_RAW`` and ``ROLLUP_FROM_ROLLUP``), raw -> 5m -> 1h as
the views do.

In timescale mode the relations are continuous aggregates that TimescaleDB plans
itself; they are read as they are.
"""

from __future__ import annotations

import weakref
from datetime import datetime

import psycopg
from psycopg import sql

from pgpulse import engine as engine_mode
from pgpulse import tiers

RAW_TABLES = {"samples": "samples", "hosts": "system_metrics"}

# A database keeps its engine mode for life, so a pooled connection asks once.
_ENGINES: weakref.WeakKeyDictionary[psycopg.Connection, str | None] = weakref.WeakKeyDictionary()


def _engine(conn: psycopg.Connection) -> str | None:
    if conn not in _ENGINES:
        _ENGINES[conn] = engine_mode.recorded(conn)
    return _ENGINES[conn]


def _store(family: str, t: tiers.Tier) -> sql.Identifier:
    return sql.Identifier(f"pgpulse_{t.relation(family)}_store")


class _Params:
    """Named bind parameters, each a fresh name (psycopg binds them; no SQL text)."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}

    def __call__(self, value: object) -> sql.Placeholder:
        name = f"tr{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def _columns(family: str, field: str | None) -> list[str]:
    """The rolled-up columns a read needs: a sample's five, or one host field's five."""
    prefix = "" if family == "samples" else f"{field}_"
    return [prefix + c for c in tiers.ROLLUP_COLUMNS]


def _store_part(family: str, t: tiers.Tier, field: str | None, lo: datetime, hi: datetime,
                p: _Params) -> sql.Composable:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in
                              ["bucket", tiers.FAMILY_KEYS[family], *_columns(family, field)])
    return sql.SQL("SELECT {cols} FROM {store} WHERE bucket >= {lo} AND bucket < {hi}").format(
        cols=cols, store=_store(family, t), lo=p(lo), hi=p(hi))


def _grouped(family: str, t: tiers.Tier, field: str | None, source: sql.Composable,
             where: sql.Composable) -> sql.Composable:
    """``t``'s buckets made from the tier below, by the registry's SQL (the rollup
    runs' own), of the needed columns only: a host row has 65 of them, and planning
    and computing them all for one chart cost more than reading it."""
    src = tiers.tier(t.source)
    time = src.time_column
    names = _columns(family, field)
    if src.raw:
        value = "value" if family == "samples" else tiers.host_value(tiers.HOST_FIELDS[field])
        exprs = [tiers.ROLLUP_FROM_RAW[c].format(value=value, time=time) for c in tiers.ROLLUP_COLUMNS]
    else:
        finer = dict(zip(tiers.ROLLUP_COLUMNS, names, strict=True))
        exprs = [tiers.ROLLUP_FROM_ROLLUP[c].format(time=time, **finer) for c in tiers.ROLLUP_COLUMNS]
    # Registry text (constants: column names, JSON paths) composed with identifiers.
    values = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(e), sql.Identifier(n))
                                for e, n in zip(exprs, names, strict=True))
    return sql.SQL("SELECT {bucket} AS bucket, {key}, {values} FROM {source} {where} GROUP BY 1, 2").format(
        bucket=sql.SQL(tiers.bucket_sql(t, time)), key=sql.Identifier(tiers.FAMILY_KEYS[family]),
        values=values, source=source, where=where)


def _parts(family: str, t: tiers.Tier, field: str | None, lo: datetime, hi: datetime,
           marks: dict[str, datetime], p: _Params) -> list[sql.Composable]:
    """SELECTs whose UNION ALL is ``t``'s rows of ``family`` with lo <= bucket (rows
    from below ``lo``'s bucket may be missing, so the caller filters on lo again) and
    every bucket below ``hi``. Bounds are constants; empty parts are left out."""
    mark = marks[t.relation(family)]
    parts: list[sql.Composable] = []
    if mark > lo:
        parts.append(_store_part(family, t, field, lo, min(hi, mark), p))
    live_lo = max(lo, mark)
    if live_lo >= hi:
        return parts
    # A bucket below hi holds rows up to one width past hi.
    live_hi = hi + t.width
    src = tiers.tier(t.source)
    if src.raw:
        where = sql.SQL("WHERE time >= {lo} AND time < {hi}").format(lo=p(live_lo), hi=p(live_hi))
        parts.append(_grouped(family, t, field, sql.Identifier(RAW_TABLES[family]), where))
    else:
        finer = _parts(family, src, field, live_lo, live_hi, marks, p)
        source = sql.SQL("({}) AS finer").format(sql.SQL(" UNION ALL ").join(finer))
        where = sql.SQL("WHERE bucket >= {lo} AND bucket < {hi}").format(lo=p(live_lo), hi=p(live_hi))
        parts.append(_grouped(family, t, field, source, where))
    return parts


def watermarks(conn: psycopg.Connection) -> dict[str, datetime]:
    """Each rolled-up relation's watermark (portable mode)."""
    rels = list(tiers.CAGGS)
    row = conn.execute(
        sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL("pgpulse_watermark({})").format(sql.Literal(r)) for r in rels))).fetchone()
    return dict(zip(rels, row, strict=True))


def tier_rows(conn: psycopg.Connection, family: str, tier_name: str, start: datetime,
              end: datetime, field: str | None = None) -> tuple[sql.Composable, dict[str, object]]:
    """A FROM item (aliased ``r``) holding the rows of ``tier_name``'s relation of
    ``family`` ("samples", or "hosts" with its headline ``field``) with bucket in
    [start, end), possibly with more outside it (filter on bucket), and the
    parameters it binds. Its columns: bucket, the key (series_id or host) and the
    rolled-up columns of the samples, or of ``field`` (``<field>_count``, ...)."""
    t = tiers.tier(tier_name)
    if t.raw:
        raise ValueError("the raw tier has no rolled-up rows")
    if (family == "hosts") != (field is not None):
        raise ValueError("a host field is named for host rows, and only for them")
    if _engine(conn) != engine_mode.PORTABLE:
        return sql.SQL("{} AS r").format(sql.Identifier(t.relation(family))), {}
    p = _Params()
    parts = _parts(family, t, field, start, end, watermarks(conn), p)
    if not parts:
        # An empty range: a FROM item with the relation's columns and no rows.
        parts = [sql.SQL("{} LIMIT 0").format(_store_part(family, t, field, start, start, p))]
    return sql.SQL("({}) AS r").format(sql.SQL(" UNION ALL ").join(parts)), p.values
