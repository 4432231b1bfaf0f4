"""The agent: a sampling thread that appends one snapshot per interval to the spool,
and a shipping thread that moves the spool to the sink, oldest first.

The two never wait for each other: a slow or absent sink delays delivery, never a
sample. Shipping after an outage is paced (COLLECTOR_REPLAY_RATE) so a database
coming back is not flooded, and retries back off from one interval up to
COLLECTOR_RETRY_MAX_SECONDS. On stop the sampler ends first, then the shipper keeps
sending what the spool holds for up to COLLECTOR_FLUSH_TIMEOUT_SECONDS; whatever is
left stays in the spool for the next start.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

import orjson

from collector.sinks import Sink, SinkRejected, SinkUnavailable
from collector.snapshot import Sampler
from collector.spool import Entry, Spool

log = logging.getLogger(__name__)


class Agent:
    def __init__(
        self,
        sampler: Sampler,
        spool: Spool,
        sink: Sink,
        *,
        host: str,
        interval: float,
        batch_size: int = 500,
        replay_rate: float = 200.0,
        retry_max_s: float = 30.0,
        flush_timeout_s: float = 10.0,
    ) -> None:
        self.sampler = sampler
        self.spool = spool
        self.sink = sink
        self.host = host
        self.interval = interval
        self.batch_size = batch_size
        self.replay_rate = replay_rate
        self.retry_max_s = retry_max_s
        self.flush_timeout_s = flush_timeout_s
        self.ticks = 0  # snapshots acknowledged (durably in the spool)
        self.shipped = 0  # snapshots the sink committed (replays of already stored ones included)
        self.lost = 0  # snapshots that could not even be spooled (disk full)
        self.failed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._outage_since: float | None = None
        self._closed = False

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        # A first reading gives the rates of the first snapshot something to
        # compare with; it is not itself stored.
        self.sampler.sample()
        log.info(
            "collector started: host %s, every %gs, sink %s, spool %s (%d waiting, %d dropped so far)",
            self.host, self.interval, self.sink.describe(), self.spool.directory,
            len(self.spool), self.spool.dropped,
        )
        for target, name in ((self._sample_loop, "collector-sampler"), (self._ship_loop, "collector-shipper")):
            thread = threading.Thread(target=self._guard, args=(target,), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _guard(self, loop: Callable[[], None]) -> None:
        """Run one of the two loops; a bug in either stops the whole agent, loudly,
        instead of leaving a process that looks alive and collects nothing."""
        try:
            loop()
        except BaseException:
            log.critical("collector stopped by an unexpected error", exc_info=True)
            self.failed = True
            self._stop.set()
            self._wake.set()
            raise

    def stop(self) -> None:
        """Stop sampling, flush the spool to the sink (bounded), release everything."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        sampler, shipper = self._threads or (None, None)
        if sampler is not None:
            sampler.join()
        if shipper is not None:
            # A write blocked on a dead network ends within the sink's own timeouts;
            # past this the spool still holds whatever was not confirmed.
            shipper.join(self.flush_timeout_s + 45)
            if shipper.is_alive():
                log.error("shipper did not finish; %d snapshots stay in the spool", len(self.spool))
                return
        self.sink.close()
        self.spool.close()
        self._closed = True

    # -- sampling -----------------------------------------------------------------------

    def tick(self) -> None:
        """Take one snapshot and append it to the spool (acknowledged on return)."""
        at, doc = self.sampler.sample()
        doc["collector"]["spool"] = {
            "waiting": len(self.spool),
            "dropped": self.spool.dropped,
            "rejected": self.spool.rejected,
        }
        stamp = at.isoformat()
        self.spool.append(self.host, stamp, orjson.dumps(doc))
        self.ticks += 1
        log.debug("snapshot spooled", extra={"snapshot_time": stamp})
        self._wake.set()

    def _sample_loop(self) -> None:
        # Ticks fall on multiples of the interval (10 s: :00, :10, ...), so every
        # host's snapshots line up; scheduling uses the monotonic clock.
        first = self.interval - (time.time() % self.interval)
        if first < min(1.0, self.interval / 2):
            # Too close to the priming reading of start(): rates over a few
            # milliseconds would be noise (CPU time moves in 10 ms steps).
            first += self.interval
        due = time.monotonic() + first
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self.tick()
            except (OSError, sqlite3.Error) as exc:  # disk full, spool unwritable
                self._lost(exc)
            due += self.interval
            behind = time.monotonic() - due
            if behind > 0:
                # Suspended, or a tick took longer than the interval: skip the missed
                # ticks rather than taking them in a burst.
                missed = int(behind // self.interval) + 1
                due += missed * self.interval
                log.warning("sampling fell behind: skipped %d tick(s)", missed)

    def _lost(self, exc: BaseException) -> None:
        self.lost += 1
        log.error("snapshot lost: the spool cannot store it: %s", exc)

    # -- shipping -----------------------------------------------------------------------

    def _ship_loop(self) -> None:
        backoff = first_wait = min(self.interval, self.retry_max_s)
        while not self._stop.is_set():
            self._wake.clear()
            batch = self.spool.oldest(self.batch_size)
            if not batch:
                self._wake.wait()
                continue
            try:
                self._ship(batch)
            except SinkUnavailable as exc:
                self._outage(exc)
                # The sink's own Retry-After wins (within reason) over our backoff.
                wait = min(exc.retry_after, 300.0) if exc.retry_after is not None else backoff
                backoff = min(backoff * 2, self.retry_max_s)
                self._stop.wait(wait)
                continue
            backoff = first_wait
            self._recovered()
            if len(self.spool):
                # Catching up after an outage: paced, oldest first.
                self._stop.wait(len(batch) / self.replay_rate)
        self._flush()

    def _ship(self, batch: Sequence[Entry]) -> None:
        """Write ``batch``; on a permanent refusal, split it to drop only the culprits."""
        try:
            self.sink.write(batch)
        except SinkRejected as exc:
            if len(batch) == 1:
                entry = batch[0]
                log.error(
                    "snapshot %s of %s refused by the sink, dropped: %s", entry.time, entry.host, exc,
                    extra={"snapshot_time": entry.time},
                )
                self.spool.delete([entry.id], rejected=True)
                return
            half = len(batch) // 2
            self._ship(batch[:half])
            self._ship(batch[half:])
            return
        self.spool.delete(e.id for e in batch)
        self.shipped += len(batch)

    def _outage(self, exc: SinkUnavailable) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            level = logging.ERROR if exc.misconfigured else logging.WARNING
            log.log(level, "sink unavailable, snapshots wait in the spool: %s", exc)
        else:
            log.debug("sink still unavailable: %s", exc)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info(
                "sink back after %.0fs; %d snapshots waiting in the spool",
                time.monotonic() - self._outage_since, len(self.spool),
            )
            self._outage_since = None

    def _flush(self) -> None:
        """On stop: send what the spool holds, unpaced, until empty or the deadline."""
        if self.drain(time.monotonic() + self.flush_timeout_s):
            log.info("spool flushed")
        else:
            log.warning("%d snapshots stay in the spool for the next start", len(self.spool))

    def drain(self, deadline: float | None = None) -> bool:
        """Send what the spool holds now, oldest first and unpaced, until it is empty
        (True), the sink is unavailable or ``deadline`` (monotonic) passed (False)."""
        while len(self.spool):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            try:
                self._ship(self.spool.oldest(self.batch_size))
            except SinkUnavailable as exc:
                log.warning("sink unavailable: %s", exc)
                return False
        return True
