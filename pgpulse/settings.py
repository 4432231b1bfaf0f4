"""Settings of the storage core: database, engine mode, tiers, series limits, scheduler, logging.

The collector and the proxy declare their own settings beside their code
(``collector/settings.py``, ``proxy/settings.py``) with the same helpers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from pgpulse import config
from pgpulse.config import SettingsError, setting

ENGINES = ("auto", "timescale", "portable")


@dataclasses.dataclass(frozen=True)
class CoreSettings:
    # Variables that were replaced: set, they stop the program with what to set instead.
    RETIRED: ClassVar[dict[str, str]] = {
        "PGPULSE_COMPRESS_AFTER_DAYS": "set PGPULSE_COMPRESS_AFTER_HOURS instead (hours; 72 is the old 3 days)",
    }

    database_url: str | None = setting(
        "DATABASE_URL",
        None,
        "PostgreSQL URL (postgresql://user:pass@host:port/db). Empty: an embedded "
        "PostgreSQL under PGPULSE_DATA_DIR. Also read from DATABASE_URL_FILE.",
        parse=config.as_url("postgresql", "postgres"),
        accepts="postgresql:// URL or empty",
        secret=True,
    )
    database_read_url: str | None = setting(
        "DATABASE_READ_URL",
        None,
        "PostgreSQL URL of a streaming replica of DATABASE_URL's database: the proxy's "
        "queries (native, PromQL, remote_read, discovery, hosts) and exports read there, "
        "writes still go to DATABASE_URL. Reads lag by the replica's replay delay "
        "(`pgpulse status` shows it). Empty: everything on DATABASE_URL.",
        parse=config.as_url("postgresql", "postgres"),
        accepts="postgresql:// URL or empty",
        secret=True,
    )
    engine: str = setting(
        "PGPULSE_ENGINE",
        "auto",
        "Schema engine chosen when migrations first run: timescale (hypertables and "
        "continuous aggregates), portable (plain PostgreSQL), or auto (timescale when "
        "the extension is available). Recorded in the database afterwards.",
        parse=config.one_of(*ENGINES),
        accepts="auto, timescale, portable",
    )
    data_dir: Path = setting(
        "PGPULSE_DATA_DIR",
        Path("var"),
        "Directory for local state: the embedded database (pgdata/) and the collector spool.",
        parse=lambda name, raw: Path(raw),
        accepts="a directory path",
    )
    raw_retention_days: int = setting(
        "PGPULSE_RAW_RETENTION_DAYS",
        14,
        "Days of raw samples and snapshots kept.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    retention_5m_days: int = setting(
        "PGPULSE_5M_RETENTION_DAYS",
        90,
        "Days of 5-minute rollups kept; must be >= the raw retention.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    retention_1h_days: int = setting(
        "PGPULSE_1H_RETENTION_DAYS",
        365,
        "Days of 1-hour rollups kept; must be >= the 5-minute retention.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    late_window_s: int = setting(
        "PGPULSE_LATE_WINDOW_SECONDS",
        3600,
        "How far back each portable rollup run re-aggregates besides the buckets of "
        "logged late writes (a margin for writes in flight). Must be shorter than the "
        "raw retention, so a rollup never re-reads dropped raw data.",
        parse=config.as_int(0),
        accepts="integer >= 0",
    )
    rollup_interval_s: int = setting(
        "PGPULSE_ROLLUP_INTERVAL_SECONDS",
        60,
        "Seconds between rollup runs of the scheduler (portable engine).",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    compress_after_hours: int = setting(
        "PGPULSE_COMPRESS_AFTER_HOURS",
        72,
        "Raw samples older than this many hours are stored compressed: TimescaleDB's "
        "compression of whole chunks (timescale engine); with "
        "PGPULSE_PORTABLE_COMPRESSION on, pgpulse's packed hours (portable engine). "
        "Readers see no difference; writes into compressed ranges still replace what "
        "is there.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    portable_compression: bool = setting(
        "PGPULSE_PORTABLE_COMPRESSION",
        False,
        "Portable engine: pack raw samples older than PGPULSE_COMPRESS_AFTER_HOURS into "
        "samples_packed (about a tenth of the space). pgpulse's readers see both; your "
        "own SQL must then read samples_all or pgpulse_samples() instead of samples, "
        "which keeps only the unpacked part.",
        parse=config.as_bool,
        accepts="on, off",
    )
    partitions_ahead_days: int = setting(
        "PGPULSE_PARTITIONS_AHEAD_DAYS",
        7,
        "Daily raw partitions created ahead of time (portable engine).",
        parse=config.as_int(1, 366),
        accepts="integer 1..366",
    )
    log_level: str = setting(
        "LOG_LEVEL",
        "info",
        "Log level of every pgpulse process.",
        parse=config.one_of("debug", "info", "warning", "error"),
        accepts="debug, info, warning, error",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "auto",
        "Log lines on stdout: auto (readable text when stdout is a terminal, JSON "
        "otherwise), json (one object per line, for Promtail/Loki) or text.",
        parse=config.one_of("auto", "json", "text"),
        accepts="auto, json, text",
    )
    loki_url: str | None = setting(
        "LOKI_URL",
        None,
        "Loki base URL (http://loki:3100); when set, pgpulse's own logs are also pushed "
        "there through a bounded queue that never blocks the caller.",
        parse=config.as_url("http", "https"),
        accepts="http(s):// URL or empty",
    )

    max_series: int = setting(
        "PROXY_MAX_SERIES", 10_000,
        "Most series in the catalogue: a write (ingest batch, ETL reading) that would "
        "create more is refused (ingest: 429).",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_series_per_metric: int = setting(
        "PROXY_MAX_SERIES_PER_METRIC", 2_000,
        "Most series of one metric name: a write that would create more is refused "
        "(ingest: 429).",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    max_labels: int = setting(
        "PROXY_MAX_LABELS", 30, "Most labels one series (sample) may carry.",
        parse=config.as_int(0, 1000), accepts="integer 0..1000",
    )
    max_label_value_len: int = setting(
        "PROXY_MAX_LABEL_VALUE_LENGTH", 1024,
        "Longest label value, in characters.",
        parse=config.as_int(1), accepts="integer >= 1",
    )
    monthly_sample_quota: int = setting(
        "PGPULSE_MONTHLY_SAMPLE_QUOTA", 0,
        "Samples each tenant may store per calendar month (UTC), on every ingest "
        "endpoint together; a batch that would pass it is refused whole (429) until the "
        "month ends. 0: unlimited. A tenant's own quota, when set, overrides it.",
        parse=config.as_int(0), accepts="integer >= 0 (0: unlimited)",
    )

    def check(self) -> None:
        """Rules between settings, checked once at start."""
        if self.retention_5m_days < self.raw_retention_days:
            raise SettingsError(
                "PGPULSE_5M_RETENTION_DAYS must be >= PGPULSE_RAW_RETENTION_DAYS "
                f"({self.retention_5m_days} < {self.raw_retention_days})"
            )
        if self.retention_1h_days < self.retention_5m_days:
            raise SettingsError(
                "PGPULSE_1H_RETENTION_DAYS must be >= PGPULSE_5M_RETENTION_DAYS "
                f"({self.retention_1h_days} < {self.retention_5m_days})"
            )
        if self.max_series_per_metric > self.max_series:
            raise SettingsError(
                "PROXY_MAX_SERIES_PER_METRIC must be <= PROXY_MAX_SERIES "
                f"({self.max_series_per_metric} > {self.max_series})"
            )
        # Refresh windows reach back the late window plus up to 15 minutes; they
        # must start inside the raw retention, or a refresh would empty rollups of
        # a range whose raw data is already dropped.
        if self.late_window_s + 900 >= self.raw_retention_days * 86400:
            raise SettingsError(
                "PGPULSE_LATE_WINDOW_SECONDS must be shorter than the raw retention "
                f"({self.raw_retention_days} days) by more than 15 minutes: a rollup would "
                "re-read dropped data"
            )

    @property
    def late_window(self) -> timedelta:
        return timedelta(seconds=self.late_window_s)


def load_core(environ: Mapping[str, str] | None = None, **overrides) -> CoreSettings:
    return config.load(CoreSettings, environ, **overrides)
