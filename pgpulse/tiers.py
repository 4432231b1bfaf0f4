"""Where a tier is defined: the raw -> 5m -> 1h tiers, what they hold, how to read
them, keeping them fresh, and their status.

The registry (:data:`TIERS`) is the one definition of a tier: its name, width,
relations, retention setting and the SQL of every aggregate over it. Reads
(``pgpulse.reads``), ``pgpulse status``, the Grafana dashboard generator and the
migrations' generated SQL use it; :func:`choose` is the one tier-choosing rule.

Readers never need to know the engine mode: the relations have the same names and
columns in both. Only keeping them fresh differs: in timescale mode TimescaleDB's
job scheduler runs the policies (``refresh`` here is for back-fills and tests); in
portable mode pgpulse's scheduler calls ``pgpulse_refresh_tiers`` and
``pgpulse_maintain`` (defined by the migrations).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from pgpulse import engine as engine_mode
from pgpulse.db import connect
from pgpulse.settings import CoreSettings
from pgpulse.store import staleness

# Headline numbers of a collector snapshot that get tiers: (column prefix, JSON path
# in system_metrics.data). Same list as the migration that made the tier columns
# (tests/test_rollups.py checks); documented in docs/metrics.md.
HOST_FIELDS: dict[str, tuple[str, ...]] = {
    "cpu_percent": ("cpu", "percent"),
    "cpu_iowait": ("cpu", "iowait"),
    "load1": ("load", "load1"),
    "load5": ("load", "load5"),
    "load15": ("load", "load15"),
    "mem_percent": ("memory", "percent"),
    "swap_percent": ("swap", "percent"),
    "rootfs_percent": ("filesystems", "/", "percent"),
    "disk_read_bps": ("disk", "read_bytes_per_s"),
    "disk_write_bps": ("disk", "write_bytes_per_s"),
    "net_rx_bps": ("network", "rx_bytes_per_s"),
    "net_tx_bps": ("network", "tx_bytes_per_s"),
    "procs": ("processes", "count"),
}

# The origin of every bucket (date_bin / time_bucket both align to it).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The aggregates a read may ask for (``rate`` is computed from raw samples in Python:
# pgpulse.promrate).
AGGREGATES = ("avg", "min", "max", "sum", "count", "last", "rate")

# What each aggregate is over one step bucket. Placeholders: {value} and {time} over
# raw rows; {count}, {sum}, {min}, {max}, {last}, {time} over rolled-up rows, whose
# columns every rolled-up tier keeps per bucket. avg is sum / count, written here once.
RAW_AGGREGATES: dict[str, str] = {
    "avg": "avg({value})",
    "min": "min({value})",
    "max": "max({value})",
    "sum": "sum({value})",
    "count": "count({value})::double precision",
    "last": "(array_agg({value} ORDER BY {time} DESC) FILTER (WHERE {value} IS NOT NULL))[1]",
}
ROLLED_UP_AGGREGATES: dict[str, str] = {
    "avg": "sum({sum}) / nullif(sum({count}), 0)",
    "min": "min({min})",
    "max": "max({max})",
    "sum": "sum({sum})",
    "count": "sum({count})::double precision",
    "last": "(array_agg({last} ORDER BY {time} DESC) FILTER (WHERE {count} > 0))[1]",
}
# The columns a rolled-up tier keeps per value, and how a bucket of them is made from
# the finer tier: from raw rows ({value}, {time}) or from finer rolled-up rows.
ROLLUP_COLUMNS = ("count", "sum", "min", "max", "last")
ROLLUP_FROM_RAW: dict[str, str] = {
    "count": "count({value})",
    "sum": "sum({value})",
    "min": "min({value})",
    "max": "max({value})",
    "last": "(array_agg({value} ORDER BY {time} DESC))[1]",
}
ROLLUP_FROM_ROLLUP: dict[str, str] = {
    "count": "sum({count})::bigint",
    "sum": "sum({sum})",
    "min": "min({min})",
    "max": "max({max})",
    "last": "(array_agg({last} ORDER BY {time} DESC))[1]",
}


@dataclasses.dataclass(frozen=True)
class Tier:
    """One tier: its relations (samples family, host snapshots family) and retention."""

    name: str
    width: timedelta  # 0 for raw: every sample is its own point
    samples: str
    hosts: str
    retention_setting: str  # the CoreSettings field (days) that bounds it
    meta_key: str  # where pgpulse_configure records that retention in pgpulse_meta
    source: str | None  # the tier it is rolled up from (None: raw, written directly)

    @property
    def raw(self) -> bool:
        return self.source is None

    @property
    def time_column(self) -> str:
        return "time" if self.raw else "bucket"

    def relation(self, family: str) -> str:
        """The relation of ``family`` ("samples" or "hosts") in this tier."""
        return {"samples": self.samples, "hosts": self.hosts}[family]

    def aggregate(self, agg: str, **columns: str) -> str:
        """The SQL text of ``agg`` over one step bucket of this tier.

        ``columns`` fill the placeholders: ``value`` (raw) or ``prefix`` (rolled up:
        "" for samples, "<field>_" for host fields), and optionally ``time`` and
        ``alias`` (a table alias put before rolled-up column names).
        """
        if agg not in RAW_AGGREGATES:
            raise ValueError(f"unknown aggregate {agg!r}: expected one of {', '.join(RAW_AGGREGATES)}")
        time = columns.get("time", self.time_column)
        if self.raw:
            return RAW_AGGREGATES[agg].format(value=columns["value"], time=time)
        alias = columns.get("alias", "")
        prefix = columns.get("prefix", "")
        names = {c: f"{alias}{prefix}{c}" for c in ROLLUP_COLUMNS}
        return ROLLED_UP_AGGREGATES[agg].format(time=time, **names)


TIERS: tuple[Tier, ...] = (
    Tier("raw", timedelta(0), "samples", "system_metrics", "raw_retention_days", "raw_retention", None),
    Tier("5m", timedelta(minutes=5), "samples_5m", "system_metrics_5m", "retention_5m_days", "retention_5m",
         "raw"),
    Tier("1h", timedelta(hours=1), "samples_1h", "system_metrics_1h", "retention_1h_days", "retention_1h",
         "5m"),
)
BY_NAME: dict[str, Tier] = {t.name: t for t in TIERS}
ROLLED_UP: tuple[Tier, ...] = tuple(t for t in TIERS if not t.raw)
# The rolled-up relations in refresh order (a tier after the tier it is built on).
CAGGS = tuple(t.relation(f) for f in ("samples", "hosts") for t in ROLLED_UP)


def tier(name: str) -> Tier:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}: expected one of {', '.join(BY_NAME)}") from None


def coarser(t: Tier) -> Tier | None:
    i = TIERS.index(t)
    return TIERS[i + 1] if i + 1 < len(TIERS) else None


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long each tier keeps data."""

    raw: timedelta
    m5: timedelta
    h1: timedelta

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Retention:
        return cls.from_days({t.name: getattr(settings, t.retention_setting) for t in TIERS})

    @classmethod
    def from_days(cls, days: Mapping[str, int]) -> Retention:
        return cls(timedelta(days=days["raw"]), timedelta(days=days["5m"]), timedelta(days=days["1h"]))

    def of(self, name: str) -> timedelta:
        return {"raw": self.raw, "5m": self.m5, "1h": self.h1}[name]


def choose(step: timedelta, start: datetime | None = None, *, retention: Retention | None = None,
           now: datetime | None = None) -> Tier:
    """The tier that serves points ``step`` apart: the coarsest one not wider than the
    step; when ``start`` lies before what that tier keeps, the next coarser tier that
    still keeps it (the coarsest tier when none does)."""
    fits = [t for t in TIERS if t.width <= step]
    chosen = fits[-1] if fits else TIERS[0]
    if start is None or retention is None:
        return chosen
    now = now or datetime.now(UTC)
    t: Tier | None = chosen
    while t is not None:
        if start >= now - retention.of(t.name):
            return t
        t = coarser(t)
    return TIERS[-1]


# -- SQL the migrations generate from the registry ------------------------------------

FAMILY_KEYS = {"samples": "series_id", "hosts": "host"}


def host_value(path: tuple[str, ...]) -> str:
    """A snapshot's headline number as float8; anything not a JSON number is NULL
    (a string where a number belongs never breaks a rollup with a cast error)."""
    p = "{" + ",".join(path) + "}"
    return f"CASE WHEN jsonb_typeof(data #> '{p}') = 'number' THEN (data #>> '{p}')::double precision END"


def bucket_sql(t: Tier, column: str) -> str:
    seconds = int(t.width.total_seconds())
    return f"date_bin(INTERVAL '{seconds} seconds', {column}, '1970-01-01 00:00:00+00'::timestamptz)"


def rollup_select(family: str, t: Tier, source: str) -> str:
    """``SELECT ... FROM source`` that makes ``t``'s buckets of ``family`` from the tier
    it is built on (the caller adds WHERE and ``GROUP BY 1, 2``)."""
    if t.raw:
        raise ValueError("the raw tier is written, not rolled up")
    src = tier(t.source)
    time = src.time_column
    key = FAMILY_KEYS[family]
    if src.raw:
        def cols(value: str, prefix: str) -> list[str]:
            return [f"{ROLLUP_FROM_RAW[c].format(value=value, time=time)} AS {prefix}{c}" for c in ROLLUP_COLUMNS]
        values = (cols("value", "") if family == "samples" else
                  ["count(*) AS snapshots", *(x for f, p in HOST_FIELDS.items() for x in cols(host_value(p), f + "_"))])
    else:
        def merged(prefix: str) -> list[str]:
            names = {c: prefix + c for c in ROLLUP_COLUMNS}
            return [f"{ROLLUP_FROM_ROLLUP[c].format(time=time, **names)} AS {prefix}{c}" for c in ROLLUP_COLUMNS]
        values = (merged("") if family == "samples" else
                  ["sum(snapshots)::bigint AS snapshots", *(x for f in HOST_FIELDS for x in merged(f + "_"))])
    return (f"SELECT {bucket_sql(t, time)} AS bucket, {key},\n       "
            + ",\n       ".join(values) + f"\nFROM {source}")


def store_columns(family: str) -> list[str]:
    """The columns of a rolled-up relation of ``family``, in order."""
    key = FAMILY_KEYS[family]
    if family == "samples":
        return ["bucket", key, *ROLLUP_COLUMNS]
    return ["bucket", key, "snapshots", *(f + "_" + c for f in HOST_FIELDS for c in ROLLUP_COLUMNS)]


# -- keeping the tiers fresh -------------------------------------------------------------

# The role that owns the continuous aggregates (revision 0007).
TIERS_ROLE = "pgpulse_tiers"
# How long a refresh waits for a policy job refreshing an overlapping window.
REFRESH_RETRY = timedelta(minutes=5)


def _last_complete(now: datetime, t: Tier) -> datetime:
    """The end of ``t``'s last complete bucket at ``now`` (the start of the open one)."""
    return EPOCH + ((now - EPOCH) // t.width) * t.width


def refresh(url: str, settings: CoreSettings, *, backfill: bool = False) -> list[tuple[str, int | None]]:
    """Bring every tier up to date once; returns (relation, buckets written or None).

    Portable: the buckets touched by late writes (the invalidation log) and the part
    above the watermark; with ``backfill``, everything inside the raw retention.
    Timescale: each continuous aggregate from a day inside its source's retention up
    to its last complete bucket (TimescaleDB re-materialises only invalidated
    ranges). Never a NULL end: that would materialise the open bucket and move the
    watermark past it, so real-time aggregation would stop covering it. The refresh
    runs as ``TIERS_ROLE``, the aggregates' owner (only an owner may refresh), which
    the writer group may ``SET ROLE`` to (revision 0007); a window a policy job is
    refreshing at the same moment is retried until ``REFRESH_RETRY`` has passed.
    """
    retention = Retention.from_settings(settings)
    with connect(url, autocommit=True) as conn:
        mode = engine_mode.recorded(conn)
        if mode == engine_mode.PORTABLE:
            rows = conn.execute(
                "SELECT relation, buckets FROM pgpulse_refresh_tiers(%s, %s, %s)",
                (retention.raw if backfill else settings.late_window, retention.raw, retention.m5),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]
        if mode != engine_mode.TIMESCALE:
            raise RuntimeError("the database is not migrated: run `pgpulse migrate`")
        now = conn.execute("SELECT now()").fetchone()[0]
        done = []
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(TIERS_ROLE)))
        try:
            for cagg, start, end in refresh_windows(now, retention):
                _refresh_cagg(conn, cagg, start, end)
                done.append((cagg, None))
        finally:
            if not conn.closed:
                conn.execute("RESET ROLE")
        return done



def _refresh_cagg(conn: psycopg.Connection, cagg: str, start: datetime, end: datetime) -> None:
    """``refresh_continuous_aggregate`` over [start, end), again while TimescaleDB says
    another refresh of an overlapping window (its policy job) is running."""
    deadline = time.monotonic() + REFRESH_RETRY.total_seconds()
    pause = 0.2
    while True:
        try:
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)", (cagg, start, end))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def refresh_windows(now: datetime, retention: Retention) -> list[tuple[str, datetime, datetime]]:
    """(continuous aggregate, start, end) of a full refresh at ``now``, in refresh order.

    Each window starts a day inside the retention of what the aggregate reads (a
    refresh over dropped chunks would empty the aggregate there) and ends at the
    aggregate's last complete bucket.
    """
    out = []
    for cagg in CAGGS:
        t = next(t for t in ROLLED_UP if cagg in (t.samples, t.hosts))
        out.append((cagg, now - retention.of(t.source) + timedelta(days=1), _last_complete(now, t)))
    return out


def maintain(url: str, settings: CoreSettings) -> int:
    """Partitions ahead and retention (portable); returns partitions dropped."""
    retention = Retention.from_settings(settings)
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pgpulse_maintain(%s, %s, %s, %s)",
            (retention.raw, retention.m5, retention.h1, timedelta(days=settings.partitions_ahead_days)),
        ).fetchone()
        return row[0]


def compress(url: str, settings: CoreSettings) -> int:
    """Portable: pack the raw samples of whole hours older than the setting (and the
    hours late writes reopened) into ``samples_packed``; returns the samples moved.
    Timescale: nothing (TimescaleDB's compression policy does it)."""
    retention = Retention.from_settings(settings)
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pgpulse_compress_samples(%s, %s)",
            (timedelta(hours=settings.compress_after_hours), retention.raw),
        ).fetchone()
        return row[0]


def prune_stale_markers(url: str, settings: CoreSettings) -> int:
    """Staleness markers past the raw retention (both engines: they are a plain table
    that neither TimescaleDB's policies nor the portable partitions cover)."""
    horizon = datetime.now(UTC) - Retention.from_settings(settings).raw
    with connect(url, autocommit=True) as conn:
        return staleness.prune(conn, horizon)


@dataclasses.dataclass(frozen=True)
class TierStatus:
    relation: str
    rows: int
    newest: datetime | None
    lag: timedelta | None
    tier: str = "raw"
    late_writes: int | None = None  # portable raw tables: logged late writes not yet rolled up


def status(conn: psycopg.Connection) -> list[TierStatus]:
    """Rows, newest bucket and lag behind now of every raw table and tier; for the
    portable engine's raw tables, the late writes waiting for the next rollup run."""
    now = conn.execute("SELECT now()").fetchone()[0]
    logged = conn.execute("SELECT to_regclass('pgpulse_invalidations') IS NOT NULL").fetchone()[0]
    out = []
    for family in ("hosts", "samples"):
        for t in TIERS:
            rel = t.relation(family)
            query = sql.SQL("SELECT count(*), max({col}) FROM {rel}").format(
                col=sql.Identifier(t.time_column), rel=sql.Identifier(rel)
            )
            rows, newest = conn.execute(query).fetchone()
            late = None
            if logged and t.raw:
                late = conn.execute(
                    "SELECT count(*) FROM pgpulse_invalidations WHERE relation = %s", (rel,)
                ).fetchone()[0]
            out.append(TierStatus(rel, rows, newest, None if newest is None else now - newest, t.name, late))
    return out
