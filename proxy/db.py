"""The proxy's database access: one psycopg_pool per process, made by create_app.

Every request borrows a connection for one transaction (``with state().connection()
as conn``: commit on success, rollback on error). A database that is down or a pool
that is exhausted surfaces as psycopg.OperationalError / PoolTimeout, which
proxy.errors turns into a 503 JSON answer.
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from pgpulse.db import APPLICATION_NAME
from proxy.settings import ProxySettings


def make_pool(url: str, settings: ProxySettings, name: str = "proxy") -> ConnectionPool:
    """A pool that connects in the background, so a proxy starts even while the
    database is down (and answers 503 until it is back)."""
    options = f"-c statement_timeout={settings.statement_timeout_ms}"
    return ConnectionPool(
        url,
        min_size=1,
        max_size=settings.pool_size,
        timeout=settings.db_timeout_s,
        kwargs={
            "application_name": APPLICATION_NAME + "-" + name,
            "connect_timeout": max(1, int(settings.db_timeout_s)),
            "options": options,
        },
        name=name,
        open=True,
        # A connection the server closed (restart, failover, idle kill) is replaced at
        # checkout for the price of one round trip, instead of failing a request.
        check=ConnectionPool.check_connection,
        # Give up on a dead server after a while, then try again on the next request.
        reconnect_timeout=max(settings.db_timeout_s * 6, 30),
    )
