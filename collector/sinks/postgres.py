"""The postgres sink: batches into system_metrics through the store.

One batch is one transaction: :func:`pgpulse.store.snapshots.write` checks every
snapshot by the rules the proxy's snapshot ingest applies too, then inserts the
batch in one set-based statement, idempotent on (host, time): a replayed snapshot
is skipped instead of failing the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import errors

from collector.sinks import SinkRejected, SinkUnavailable
from collector.spool import Entry
from pgpulse import db
from pgpulse.store import snapshots
from pgpulse.store.errors import InvalidSample
from pgpulse.store.tenants import DEFAULT_TENANT

log = logging.getLogger(__name__)

# A dead server or a black-holed network must fail a write within seconds, not
# hang the shipper: keepalives and a TCP user timeout bound the wait for an
# acknowledgement, a statement timeout bounds a server that is merely stuck.
CONNECT_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "options": "-c statement_timeout=30000",
    "application_name": "pgpulse-collector",
}


class PostgresSink:
    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    def describe(self) -> str:
        return f"postgres {db.redact(self.url)}"

    def check(self) -> None:
        # Nothing to refuse at start: a database that is not up yet is an outage
        # the spool rides out, not a configuration error.
        return None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            self._conn = db.connect(self.url, **CONNECT_OPTIONS)
        return self._conn

    def write(self, batch: Sequence[Entry]) -> int:
        if not batch:
            return 0
        try:
            conn = self._connection()
            inserted = snapshots.write(
                conn, [{"host": e.host, "time": e.time, "data": e.data} for e in batch],
                tenant=DEFAULT_TENANT,  # the collector writing straight to the database is the operator's
            )
            conn.commit()
        except InvalidSample as exc:
            self._rollback()
            raise SinkRejected(exc.message) from exc
        except (errors.DataError, errors.IntegrityError) as exc:
            self._rollback()
            raise SinkRejected(_first_line(exc)) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop()
            raise SinkUnavailable(_first_line(exc)) from exc
        except psycopg.Error as exc:
            # A missing table or privilege: waiting does not fix it, a migration or
            # a GRANT does. Keep the snapshots meanwhile.
            self._rollback()
            raise SinkUnavailable(_first_line(exc), misconfigured=True) from exc
        return inserted

    def _rollback(self) -> None:
        if self._conn is None or self._conn.closed:
            return
        try:
            self._conn.rollback()
        except psycopg.Error:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error as exc:
                log.debug("closing a broken connection: %s", exc)
            self._conn = None

    def close(self) -> None:
        self._drop()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
