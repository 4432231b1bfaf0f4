"""Settings of the host collector (COLLECTOR_*), read once at start.

The database URL, data directory, log level and Loki URL are the core's
(pgpulse/settings.py); everything the agent alone needs is declared here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from pgpulse import config
from pgpulse.config import SettingsError, setting

SINKS = ("postgres", "http")


def _path(name: str, raw: str) -> Path:
    text = raw.strip()
    if not text:
        raise SettingsError(f"{name}: expected a path")
    return Path(text)


def _optional_path(name: str, raw: str) -> Path | None:
    return Path(raw.strip()) if raw.strip() else None


def _hostname(name: str, raw: str) -> str | None:
    text = raw.strip()
    if any(ch.isspace() for ch in text):
        raise SettingsError(f"{name}={raw!r}: a host name has no spaces")
    return text or None


@dataclasses.dataclass(frozen=True)
class CollectorSettings:
    interval: float = setting(
        "COLLECTOR_INTERVAL",
        10.0,
        "Seconds between two snapshots (fractions allowed).",
        parse=config.as_float(0, exclusive=True),
        accepts="a number of seconds > 0",
    )
    sink: str = setting(
        "COLLECTOR_SINK",
        "postgres",
        "Where snapshots go: postgres (straight into system_metrics through DATABASE_URL) "
        "or http (pushed to the proxy's ingest API, for hosts without database credentials).",
        parse=config.one_of(*SINKS),
        accepts="postgres, http",
    )
    hostname: str | None = setting(
        "COLLECTOR_HOSTNAME",
        None,
        "Host name written with every snapshot. Empty: the machine's host name (in "
        "container mode, the host's /etc/hostname under COLLECTOR_ROOT_PATH).",
        parse=_hostname,
        accepts="a host name or empty",
    )
    labels: dict[str, str] | None = setting(
        "COLLECTOR_LABELS",
        None,
        "Static labels copied into every snapshot (data.labels), e.g. env=prod,rack=r1.",
        parse=config.as_labels,
        accepts="key=value pairs separated by commas",
    )
    top_n: int = setting(
        "COLLECTOR_TOP_N",
        5,
        "Processes listed in each snapshot by CPU and by memory; 0 turns the "
        "per-process walk (and the per-state process counts) off.",
        parse=config.as_int(0, 100),
        accepts="integer 0..100",
    )
    http_url: str | None = setting(
        "COLLECTOR_HTTP_URL",
        None,
        "Base URL of the proxy for the http sink (http://proxy:8085); snapshots are "
        "POSTed to <url>/api/ingest/snapshots. Required when COLLECTOR_SINK=http.",
        parse=config.as_url("http", "https"),
        accepts="http(s):// URL or empty",
    )
    api_key: str | None = setting(
        "COLLECTOR_API_KEY",
        None,
        "API key (ingest scope) sent as 'Authorization: Bearer' by the http sink. "
        "Also read from COLLECTOR_API_KEY_FILE.",
        parse=config.as_optional_str,
        accepts="an API key or empty",
        secret=True,
    )
    spool_dir: Path | None = setting(
        "COLLECTOR_SPOOL_DIR",
        None,
        "Directory of the on-disk spool that keeps snapshots until the sink has them. "
        "Empty: PGPULSE_DATA_DIR/spool.",
        parse=_optional_path,
        accepts="a directory path or empty",
    )
    spool_max_rows: int = setting(
        "COLLECTOR_SPOOL_MAX_ROWS",
        50_000,
        "Snapshots the spool keeps at most while the sink is away (50,000 is ~5.8 days "
        "at 10 s); past it the oldest are dropped and counted.",
        parse=config.as_int(1),
        accepts="integer >= 1",
    )
    batch_size: int = setting(
        "COLLECTOR_BATCH_SIZE",
        500,
        "Snapshots sent to the sink in one write (one transaction or one request).",
        parse=config.as_int(1, 10_000),
        accepts="integer 1..10000",
    )
    replay_rate: float = setting(
        "COLLECTOR_REPLAY_RATE",
        200.0,
        "Snapshots per second replayed from the spool after an outage, so a returning "
        "sink is not flooded.",
        parse=config.as_float(0, exclusive=True),
        accepts="a number > 0",
    )
    retry_max_s: float = setting(
        "COLLECTOR_RETRY_MAX_SECONDS",
        30.0,
        "Longest wait between two attempts while the sink is unavailable (the wait "
        "doubles from one interval up to this).",
        parse=config.as_float(0, exclusive=True),
        accepts="a number of seconds > 0",
    )
    flush_timeout_s: float = setting(
        "COLLECTOR_FLUSH_TIMEOUT_SECONDS",
        10.0,
        "On stop (SIGTERM, Ctrl-C), how long the agent keeps sending spooled snapshots "
        "before it exits; what is left stays in the spool for the next start.",
        parse=config.as_float(0),
        accepts="a number of seconds >= 0",
    )
    proc_path: Path = setting(
        "COLLECTOR_PROC_PATH",
        Path("/proc"),
        "Where the host's /proc is (container mode: /host/proc).",
        parse=_path,
        accepts="a directory path",
    )
    sys_path: Path = setting(
        "COLLECTOR_SYS_PATH",
        Path("/sys"),
        "Where the host's /sys is (container mode: /host/sys).",
        parse=_path,
        accepts="a directory path",
    )
    root_path: Path = setting(
        "COLLECTOR_ROOT_PATH",
        Path("/"),
        "Where the host's root filesystem is (container mode: /host); anything other "
        "than / turns on container mode: mounts are read from the host's PID 1.",
        parse=_path,
        accepts="a directory path",
    )

    def check(self) -> None:
        """Rules between settings and paths that must exist, checked once at start."""
        if self.sink == "http" and not self.http_url:
            raise SettingsError("COLLECTOR_HTTP_URL must be set when COLLECTOR_SINK=http")
        for env, path in (
            ("COLLECTOR_PROC_PATH", self.proc_path),
            ("COLLECTOR_SYS_PATH", self.sys_path),
            ("COLLECTOR_ROOT_PATH", self.root_path),
        ):
            # Only paths that were moved are checked: on a platform without /proc
            # the defaults simply leave those probes out.
            if path not in (Path("/proc"), Path("/sys"), Path("/")) and not path.is_dir():
                raise SettingsError(f"{env}={str(path)!r}: not a directory")

    def spool_path(self, data_dir: Path) -> Path:
        """The spool directory: COLLECTOR_SPOOL_DIR, else ``data_dir/spool``."""
        return self.spool_dir if self.spool_dir is not None else Path(data_dir) / "spool"


def load_collector(environ: Mapping[str, str] | None = None, **overrides) -> CollectorSettings:
    return config.load(CollectorSettings, environ, **overrides)
