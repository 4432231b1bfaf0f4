"""The raw -> 5m -> 1h tiers: what they hold, keeping them fresh, and their status.

Readers never need to know the engine mode: the relations have the same names and
columns in both. Only keeping them fresh differs: in timescale mode TimescaleDB's
job scheduler runs the policies (``refresh`` here is for back-fills and tests); in
portable mode pgpulse's scheduler calls ``pgpulse_refresh_tiers`` and
``pgpulse_maintain`` (defined by the migrations).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from pgpulse import engine as engine_mode
from pgpulse.settings import CoreSettings

# Headline numbers of a collector snapshot that get tiers: (column prefix, JSON path
# in system_metrics.data). Same list as the migration that made the tier columns
# (tests/test_tiers.py checks); documented in docs/metrics.md.
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

# Each tier's relations, in refresh order (a 1h tier is built on its 5m tier).
CAGGS = ("samples_5m", "samples_1h", "system_metrics_5m", "system_metrics_1h")
TIER_WIDTH = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1)}


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long each tier keeps data."""

    raw: timedelta
    m5: timedelta
    h1: timedelta

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Retention:
        return cls(
            timedelta(days=settings.raw_retention_days),
            timedelta(days=settings.retention_5m_days),
            timedelta(days=settings.retention_1h_days),
        )


def refresh(url: str, settings: CoreSettings) -> list[tuple[str, int | None]]:
    """Bring every tier up to date once; returns (relation, buckets written or None)."""
    retention = Retention.from_settings(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        mode = engine_mode.recorded(conn)
        if mode == engine_mode.PORTABLE:
            rows = conn.execute(
                "SELECT relation, buckets FROM pgpulse_refresh_tiers(%s, %s, %s)",
                (settings.late_window, retention.raw, retention.m5),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]
        if mode != engine_mode.TIMESCALE:
            raise RuntimeError("the database is not migrated: run `pgpulse migrate`")
        # Never refresh a range whose source was dropped by retention: TimescaleDB
        # would empty the aggregate there. Start a day inside the source's horizon.
        now = conn.execute("SELECT now()").fetchone()[0]
        starts = {
            "5m": now - retention.raw + timedelta(days=1),
            "1h": now - retention.m5 + timedelta(days=1),
        }
        done = []
        for cagg in CAGGS:
            start = starts[cagg.rsplit("_", 1)[1]]
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, NULL)", (cagg, start))
            done.append((cagg, None))
        return done


def maintain(url: str, settings: CoreSettings) -> int:
    """Partitions ahead and retention (portable); returns partitions dropped."""
    retention = Retention.from_settings(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pgpulse_maintain(%s, %s, %s, %s)",
            (retention.raw, retention.m5, retention.h1, timedelta(days=settings.partitions_ahead_days)),
        ).fetchone()
        return row[0]


@dataclasses.dataclass(frozen=True)
class TierStatus:
    relation: str
    rows: int
    newest: datetime | None
    lag: timedelta | None


def status(conn: psycopg.Connection) -> list[TierStatus]:
    """Rows, newest bucket and lag behind now of every raw table and tier."""
    now = conn.execute("SELECT now()").fetchone()[0]
    out = []
    for rel, col in (
        ("system_metrics", "time"),
        ("system_metrics_5m", "bucket"),
        ("system_metrics_1h", "bucket"),
        ("samples", "time"),
        ("samples_5m", "bucket"),
        ("samples_1h", "bucket"),
    ):
        query = sql.SQL("SELECT count(*), max({col}) FROM {rel}").format(
            col=sql.Identifier(col), rel=sql.Identifier(rel)
        )
        rows, newest = conn.execute(query).fetchone()
        out.append(TierStatus(rel, rows, newest, None if newest is None else now - newest))
    return out
