"""The ETL as one part: its settings, its source and the database, built once.

Each composition root builds one :class:`EtlService` from the settings and a
source, and hands it to what runs the ETL: ``pgpulse etl`` (the CLI), the
scheduler (``pgpulse up`` / ``pgpulse scheduler``) and the proxy's sync endpoints
(``create_app``). None of it needs Flask. The service owns its source: ``close()``
releases the MongoDB client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from etl import replay as replays
from etl import runs
from etl.settings import EtlSettings
from etl.source import MongoSource, Source
from pgpulse.store.series import SeriesLimits


@dataclasses.dataclass
class EtlService:
    url: str
    settings: EtlSettings
    source: Source
    # The series limits its derived samples obey (None: the core settings of the
    # environment); composition roots pass those of their own core settings.
    limits: SeriesLimits | None = None

    @classmethod
    def from_settings(cls, url: str, settings: EtlSettings,
                      limits: SeriesLimits | None = None) -> EtlService:
        """The service reading from MongoDB at MONGO_URI (connected on first use)."""
        return cls(url, settings, MongoSource(settings), limits)

    @property
    def where(self) -> str:
        return self.source.where

    def run(
        self,
        trigger: str = "cli",
        *,
        max_batches: int | None = None,
        progress: runs.Progress | None = None,
    ) -> runs.RunResult:
        """One run (see :func:`etl.runs.run`)."""
        return runs.run(self.url, self.settings, self.source, trigger=trigger,
                        max_batches=max_batches, progress=progress, limits=self.limits)

    def replay(self, ids: Sequence[int] | None = None, *, all_open: bool = False) -> replays.ReplayResult:
        """Send rejects through again (see :func:`etl.replay.replay`)."""
        return replays.replay(self.url, self.settings, self.source, ids=ids, all_open=all_open,
                              limits=self.limits)

    def close(self) -> None:
        self.source.close()
