"""Where the database is: DATABASE_URL, or the embedded server under the data dir."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol

from pgpulse.embedded import EmbeddedPostgres
from pgpulse.settings import CoreSettings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def database(settings: CoreSettings) -> Iterator[str]:
    """Yield the database URL; starts (and afterwards stops) the embedded server when
    DATABASE_URL is not set."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


class Service(Protocol):
    """A long-running part of ``pgpulse up`` (scheduler, proxy, collector)."""

    name: str

    def start(self) -> None:
        """Start in the background and return."""

    def stop(self) -> None:
        """Stop, flushing whatever is buffered; return when done."""
