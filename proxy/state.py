"""What one proxy app holds for its requests: settings, the pool, caches, the ETL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool

from etl.service import EtlService
from pgpulse.settings import CoreSettings
from pgpulse.store.series import SeriesCache
from pgpulse.tiers import Retention
from proxy.settings import ProxySettings

if TYPE_CHECKING:
    from proxy.ratelimit import RateLimits

EXTENSION = "pgpulse_proxy"


@dataclasses.dataclass
class ProxyState:
    core: CoreSettings
    settings: ProxySettings
    database_url: str
    pool: ConnectionPool
    retention: Retention
    # The rate limits and their counters (proxy.ratelimit), built by create_app.
    ratelimit: RateLimits
    # Where reads go (DATABASE_READ_URL, a streaming replica); None: the pool above.
    replica_pool: ConnectionPool | None = None
    # The ETL service of the sync endpoints, built by create_app; None when the ETL is
    # off, and then etl_off says why (the endpoints answer 503 with it).
    etl: EtlService | None = None
    etl_off: str | None = None
    # API keys verified recently: key hash -> (expires at monotonic time, key id, scopes).
    key_cache: dict[str, tuple[float, int, frozenset[str], str]] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    # Series ids by (name, labels), shared by the ingest requests.
    series_cache: SeriesCache = dataclasses.field(default_factory=SeriesCache)
    # The OpenAPI paths the blueprint modules add (served by /api/openapi.json).
    openapi_paths: dict[str, Any] = dataclasses.field(default_factory=dict)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in one transaction (commit on success, rollback on error)."""
        with self.pool.connection() as conn:
            yield conn

    @property
    def read_pool(self) -> ConnectionPool:
        """The pool reads use: the replica's when DATABASE_READ_URL is set."""
        return self.replica_pool or self.pool

    @contextmanager
    def read_connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection for a read (a query, discovery, an export): on the
        replica when there is one. Nothing may be written through it."""
        with self.read_pool.connection() as conn:
            yield conn

    def close(self) -> None:
        """Release the pool and the ETL's MongoDB client."""
        if self.etl is not None:
            self.etl.close()
        self.ratelimit.close()
        if self.replica_pool is not None:
            self.replica_pool.close()
        self.pool.close()


def state() -> ProxyState:
    """The state of the app serving the current request."""
    return current_app.extensions[EXTENSION]
