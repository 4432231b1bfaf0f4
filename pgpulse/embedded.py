"""An embedded PostgreSQL under the data directory, for running without DATABASE_URL.

The ``pgserver`` wheel ships PostgreSQL 16 binaries (and copes with running as root
by starting the server as an unprivileged system user). The server listens on a
Unix socket only, so it never clashes with another PostgreSQL on the machine, and
its data lives in ``<data_dir>/pgdata`` across restarts.
"""

from __future__ import annotations

import fcntl
import logging
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE = "pgpulse"


class EmbeddedPostgres:
    """Start (or join) the PostgreSQL server whose data lives in ``data_dir/pgdata``."""

    def __init__(self, data_dir: Path, database: str = DATABASE) -> None:
        self.pgdata = Path(data_dir).resolve() / "pgdata"
        self.database = database
        self._server = None

    def start(self) -> str:
        """Start the server if needed, make sure the database exists; returns its URL."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver  # imported late: only the embedded mode needs it

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            # pgserver makes and initdb's the data directory when it is missing, with
            # no guard against a second process doing the same at once (`up` starting
            # while `status` joins it): one process at a time starts or joins.
            with open(self.pgdata.parent / "pgdata.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        admin_url = self._server.get_uri("postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # Several pgpulse processes may share this server (`up` and `status`):
            # one of them at a time checks for the database and makes it.
            conn.execute("SELECT pg_advisory_lock(hashtext('pgpulse_embedded_createdb'))")
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        url = self._server.get_uri(self.database)
        log.info("embedded PostgreSQL running, data in %s", self.pgdata)
        return url

    @property
    def socket_dir(self) -> str:
        """The directory of the server's Unix socket (its "host")."""
        query = parse_qs(urlsplit(self._server.get_uri()).query)
        return query["host"][0]

    def stop(self) -> None:
        """Stop the server (when this process is the last one using it); data stays."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            log.info("embedded PostgreSQL stopped")
