"""Where spooled snapshots go: PostgreSQL directly, or the proxy's ingest API.

A sink writes a batch of spooled snapshots and either returns (the batch is
committed: the agent may delete it from the spool) or raises:

* :class:`SinkUnavailable`: not now (database down, 5xx, 429, timeout). The batch
  stays in the spool and is tried again later;
* :class:`SinkRejected`: never as it is (a 400/413, a value the database refuses).
  The agent splits the batch to find the snapshots at fault and drops only those.

Writes are idempotent on (host, time), so a batch sent twice (a crash between the
commit and the spool's delete) stores each snapshot once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from collector.spool import Entry


class SinkError(Exception):
    """A batch was not stored."""


class SinkUnavailable(SinkError):
    """Try again later; ``retry_after`` is the sink's own hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, misconfigured: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # True when waiting alone will not help (wrong key, missing table): logged
        # as an error, yet the snapshots are still kept until someone fixes it.
        self.misconfigured = misconfigured


class SinkRejected(SinkError):
    """The sink refuses this batch for good."""


class Sink(Protocol):
    name: str

    def check(self) -> None:
        """At start: raise SettingsError when the sink cannot work as configured."""

    def write(self, batch: Sequence[Entry]) -> int:
        """Store ``batch``; returns how many snapshots were new to the sink."""

    def describe(self) -> str:
        """Where the sink writes, fit for logs (no secrets)."""

    def close(self) -> None:
        """Release connections."""
