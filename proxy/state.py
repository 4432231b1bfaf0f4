"""What one proxy app holds for its requests: settings, the pool, caches."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool

from pgpulse.settings import CoreSettings
from pgpulse.tiers import Retention
from proxy.settings import ProxySettings

EXTENSION = "pgpulse_proxy"


@dataclasses.dataclass
class ProxyState:
    core: CoreSettings
    settings: ProxySettings
    database_url: str
    pool: ConnectionPool
    retention: Retention
    # The mapping settings were loaded from (environment, or create_app's config).
    environ: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # API keys verified recently: key hash -> (expires at monotonic time, key id, scopes).
    key_cache: dict[str, tuple[float, int, frozenset[str]]] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    # Other parts of the proxy (the ETL) may keep their own per-app objects here.
    extras: dict[str, object] = dataclasses.field(default_factory=dict)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction (commit on success, rollback on error)."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        """Release the pool and whatever other parts keep in ``extras`` (their
        ``close()``, e.g. the ETL's MongoDB client)."""
        for extra in self.extras.values():
            close = getattr(extra, "close", None)
            if callable(close):
                close()
        self.pool.close()


def state() -> ProxyState:
    """The state of the app serving the current request."""
    return current_app.extensions[EXTENSION]
