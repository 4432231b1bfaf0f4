"""Where the database is: DATABASE_URL, or the embedded server under the data dir."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from pgpulse.settings import CoreSettings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def database(settings: CoreSettings) -> Iterator[str]:
    """Yield the database URL; starts (and afterwards stops) the embedded server when
    DATABASE_URL is not set."""
    if settings.database_url:
        yield settings.database_url
        return
    from pgpulse.embedded import EmbeddedPostgres  # psycopg and pgserver: only when needed

    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (Ctrl-C) this process receives."""
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def run_until_stopped(services: list[Service], ready: str,
                      on_ready: Callable[[], None] | None = None) -> None:
    """Start ``services`` in order, log ``ready`` (and call ``on_ready``), wait for
    SIGTERM or Ctrl-C, then stop them newest first (each flushes what it buffers).
    Services already started are stopped even when a later one fails to start."""
    stop = stop_on_signals()
    started: list[Service] = []
    try:
        for service in services:
            service.start()
            started.append(service)
            log.info("%s started", service.name)
        log.info(ready)
        if on_ready is not None:
            on_ready()
        stop.wait()
    finally:
        for service in reversed(started):
            service.stop()
            log.info("%s stopped", service.name)


class Service(Protocol):
    """A long-running part of ``pgpulse up`` (scheduler, proxy, collector)."""

    name: str

    def start(self) -> None:
        """Start in the background and return."""

    def stop(self) -> None:
        """Stop, flushing whatever is buffered; return when done."""
