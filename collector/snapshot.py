"""One snapshot of the host: every probe, assembled into the schema-1 document.

The document (docs/metrics.md) is what lands in ``system_metrics.data``. Its
headline numbers sit exactly at the JSON paths of ``pgpulse.tiers.HOST_FIELDS``,
which the 5m and 1h tiers aggregate.

A probe that fails is left out of that snapshot (its name is listed in
``collector.skipped``) and logged once, at its first failure; it is logged again
only after it worked in between. The agent never stops for a probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from collector.filesystems import FilesystemProbe
from collector.probes import (
    PROBE_ERRORS,
    CpuProbe,
    DiskProbe,
    LoadProbe,
    MemoryProbe,
    NetworkProbe,
    SampleContext,
    SwapProbe,
    SystemProbe,
)
from collector.processes import ProcessProbe
from collector.rates import Rates
from collector.sensors import FanProbe, TemperatureProbe
from collector.source import HostSource
from pgpulse import __version__

SCHEMA = 1

log = logging.getLogger(__name__)


class Sampler:
    """Takes snapshots of one host; keeps what rates need between two of them."""

    def __init__(
        self,
        source: HostSource | None = None,
        *,
        top_n: int = 5,
        labels: Mapping[str, str] | None = None,
        interval: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source or HostSource()
        self.labels = dict(labels or {})
        self.interval = interval
        self._monotonic = monotonic
        self._clock = clock
        self.rates = Rates()
        # Memory before processes: the top-N needs the memory total.
        self.probes = [
            CpuProbe(),
            LoadProbe(),
            MemoryProbe(),
            SwapProbe(),
            FilesystemProbe(),
            DiskProbe(),
            NetworkProbe(),
            ProcessProbe(top_n),
            SystemProbe(),
            TemperatureProbe(),
            FanProbe(),
        ]
        self._last: float | None = None
        self.failing: dict[str, str] = {}  # probe name -> why, while it fails

    def sample(self) -> tuple[datetime, dict[str, Any]]:
        """(time, document) of one snapshot. Rates cover the time since the previous
        call; the first call of a sampler has none (they are null)."""
        started = time.thread_time()
        now = self._monotonic()
        at = self._clock()
        elapsed = None if self._last is None else now - self._last
        self._last = now
        self.rates.begin(elapsed)
        ctx = SampleContext(self.source, self.rates, elapsed, at)
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "interval_s": self.interval,
            "elapsed_s": None if elapsed is None else round(elapsed, 3),
            "labels": dict(self.labels),
        }
        skipped = []
        for probe in self.probes:
            try:
                sections = probe.read(ctx)
            except PROBE_ERRORS as exc:
                skipped.append(probe.name)
                self._failed(probe.name, exc)
                continue
            if probe.name in self.failing:
                del self.failing[probe.name]
                log.info("probe %s works again", probe.name, extra={"probe": probe.name})
            doc.update(sections)
        self.rates.end()
        doc["collector"] = {
            "version": __version__,
            "skipped": skipped,
            "cpu_ms": round((time.thread_time() - started) * 1000, 3),
        }
        return at, doc

    def _failed(self, name: str, exc: BaseException) -> None:
        # Logged at the first failure only; ``collector.skipped`` says it every time.
        if name not in self.failing:
            log.warning("probe %s skipped: %s: %s", name, type(exc).__name__, exc, extra={"probe": name})
        self.failing[name] = f"{type(exc).__name__}: {exc}"
