"""Streamed exports of raw rows: samples of chosen series, host snapshots.

An export may be long, and its reader (an HTTP client) may be slow or stop reading
altogether. So that a stalled reader cannot hold a database session, or a slot of
the caller's pool, rows are fetched by a pump thread from a server-side cursor, in
batches of ``itersize``, into a queue one batch deep:

* the reader takes batches from :class:`RowStream` at its own pace;
* when the reader has not taken a batch for ``idle_timeout_ms``, the pump gives up:
  the cursor closes, the transaction ends and the connection goes back to the pool.
  The reader, if it ever comes back, gets :class:`ExportAborted`;
* the export's transaction also carries PostgreSQL's ``statement_timeout`` and an
  ``idle_in_transaction_session_timeout`` of the idle timeout plus
  :data:`SERVER_MARGIN_MS`, so the server ends it even if this process cannot (a
  hung thread, a lost process).

Unlike the store's writers, an export takes the pool rather than a connection: it
owns its transaction, which must outlive the call.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger("pgpulse.store.exports")

_END = object()
_POLL_S = 0.2  # how often waiting threads look whether the other side gave up
# PostgreSQL's backstop comes this much after the pump's own deadline, so that in the
# ordinary case the pump ends the transaction cleanly and the connection stays usable.
SERVER_MARGIN_MS = 1000


class ExportAborted(RuntimeError):
    """The export stopped before its end (its reader stalled, or the database failed)."""


@dataclasses.dataclass(frozen=True)
class ExportLimits:
    itersize: int = 5000  # rows per fetch from the server-side cursor
    statement_timeout_ms: int = 300_000  # longest one statement (each fetch) may run; 0: none
    idle_timeout_ms: int = 20_000  # longest the transaction waits for its reader

    def __post_init__(self) -> None:
        if self.itersize < 1 or self.statement_timeout_ms < 0 or self.idle_timeout_ms < 1:
            raise ValueError(f"invalid export limits: {self}")


class RowStream:
    """Batches of rows of one query, fetched by a pump thread (see the module doc).

    Iterate it for rows; :meth:`close` (or the end of the rows) stops the pump.
    Creating it waits for the first batch, so a database that is down, a query that
    fails or a timeout raise here, before any byte of the export is sent.
    """

    def __init__(self, pool: ConnectionPool, query: sql.Composable, params: Sequence[object],
                 limits: ExportLimits) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._cancel = threading.Event()
        self._limits = limits
        self._thread = threading.Thread(target=self._pump, args=(pool, query, list(params)),
                                        name="pgpulse-export", daemon=True)
        self._thread.start()
        self._first = self._take()

    # -- the pump thread --------------------------------------------------------------

    def _offer(self, item: object) -> bool:
        """Put ``item`` for the reader; False when the reader stalled or went away."""
        deadline = time.monotonic() + self._limits.idle_timeout_ms / 1000
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if time.monotonic() >= deadline:
                    log.warning("export stopped: its reader took nothing for %d ms",
                                self._limits.idle_timeout_ms)
                    return False
        return False

    def _pump(self, pool: ConnectionPool, query: sql.Composable, params: list[object]) -> None:
        try:
            with pool.connection() as conn:
                # SET LOCAL: the limits end with the transaction, the pooled session keeps its own.
                conn.execute("SELECT set_config('statement_timeout', %s, true), "
                             "set_config('idle_in_transaction_session_timeout', %s, true)",
                             (str(self._limits.statement_timeout_ms),
                              str(self._limits.idle_timeout_ms + SERVER_MARGIN_MS)))
                with conn.cursor(name="pgpulse_export") as cur:
                    cur.execute(query, params)
                    while True:
                        rows = cur.fetchmany(self._limits.itersize)
                        if not rows:
                            break
                        if not self._offer(rows):
                            return  # leaving the blocks closes the cursor and ends the transaction
            self._offer(_END)
        except psycopg.errors.IdleInTransactionSessionTimeout:
            self._offer(ExportAborted("the export stopped: the server ended its idle transaction"))
        except Exception as exc:  # handed to the reader, which raises it in its own thread
            self._offer(exc)

    # -- the reader ---------------------------------------------------------------------

    def _take(self) -> object:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise ExportAborted("the export stopped: its reader stalled for longer "
                                        f"than {self._limits.idle_timeout_ms} ms") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def __iter__(self) -> Iterator[tuple]:
        item = self._first
        try:
            while item is not _END:
                yield from item  # type: ignore[misc]
                item = self._take()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the pump (it ends its transaction and returns its connection)."""
        self._cancel.set()


def samples(pool: ConnectionPool, series_ids: Sequence[int], start: datetime, end: datetime,
            limits: ExportLimits, *, tenant: str) -> RowStream:
    """(series_id, time, value) of those of ``series_ids`` that are series of ``tenant``,
    in [start, end), by series and time."""
    query = sql.SQL(
        "SELECT series_id, time, value FROM pgpulse_samples(ARRAY("
        "SELECT id FROM series WHERE id = ANY(%s) AND tenant_id = %s), %s, %s) "
        "ORDER BY series_id, time"
    )
    return RowStream(pool, query, [list(series_ids), tenant, start, end], limits)


def snapshots(pool: ConnectionPool, hosts: Sequence[str] | None, path: Sequence[str] | None,
              start: datetime, end: datetime, limits: ExportLimits, *, tenant: str) -> RowStream:
    """(host, time, value) of the host snapshots of ``tenant`` in [start, end) (of
    ``hosts``; None: all), by host and time. The value is the whole snapshot as JSON text, or with ``path`` the
    number at that path of it (None where it is not a number)."""
    params: list[object] = [tenant, start, end] + ([list(hosts)] if hosts is not None else [])
    host_filter = sql.SQL("") if hosts is None else sql.SQL(" AND host = ANY(%s)")
    if path is None:
        value = sql.SQL("data::text")
    else:
        value = sql.SQL(
            "CASE WHEN jsonb_typeof(data #> %s) = 'number' THEN (data #>> %s)::double precision END"
        )
        params = [list(path), list(path), *params]
    query = sql.SQL(
        "SELECT host, time, {value} FROM system_metrics WHERE tenant_id = %s "
        "AND time >= %s AND time < %s{hosts} "
        "ORDER BY host, time"
    ).format(value=value, hosts=host_filter)
    return RowStream(pool, query, params, limits)
