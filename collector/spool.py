"""The on-disk spool: every snapshot waits here until the sink has committed it.

A snapshot is *acknowledged* when :meth:`Spool.append` returns: it is then in a
SQLite database in WAL mode with ``synchronous=FULL``, i.e. fsynced, and survives
a crash of the agent or of the machine. It leaves the spool only through
:meth:`Spool.delete`, which the agent calls after the sink's commit succeeded, so
a crash between the two replays it, and the sink's (host, time) key turns the
replay into a no-op. Nothing acknowledged is lost; nothing is written twice.

The spool is bounded: past ``max_rows`` the oldest snapshots are dropped, and a
durable counter says how many (also shown in every snapshot as
``collector.spool.dropped``). One agent at a time owns a spool directory (an
exclusive lock on ``spool.lock``), since two would ship the same rows.

The spool is local state of one agent, not part of the database schema: it
creates its own two tables when it opens the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pgpulse.config import SettingsError

log = logging.getLogger(__name__)

FILE = "spool.sqlite3"
LOCK = "spool.lock"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One spooled snapshot: its place in the spool, and the row for system_metrics."""

    id: int
    host: str
    time: str  # RFC 3339
    data: bytes  # the JSON document


class Spool:
    def __init__(self, directory: Path, max_rows: int) -> None:
        self.directory = Path(directory)
        self.max_rows = max_rows
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / LOCK, "a+")  # held (locked) until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SettingsError(
                f"COLLECTOR_SPOOL_DIR={str(self.directory)!r}: another collector is using this spool"
            ) from None
        self._mutex = threading.Lock()
        self.path = self.directory / FILE
        try:
            self._db = self._open(self.path)
        except sqlite3.DatabaseError as exc:
            # A spool that is not a database any more (a disk fault, a truncated
            # copy): keep it aside for inspection and start a new one, rather than
            # refusing to collect at all.
            aside = self.path.with_name(f"{FILE}.corrupt-{int(time.time())}")
            log.error("spool %s is unreadable (%s): moved to %s, starting a new one", self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    self.path.with_name(FILE + suffix).unlink()
            self._db = self._open(self.path)
        self._count = self._db.execute("SELECT count(*) FROM snapshots").fetchone()[0]

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        # Autocommit mode with explicit BEGIN IMMEDIATE: each method is one
        # transaction. One connection, shared by the sampling and shipping threads
        # under a mutex.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            """
            CREATE TABLE IF NOT EXISTS snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                host TEXT NOT NULL,
                time TEXT NOT NULL,
                data BLOB NOT NULL,
                UNIQUE (host, time)
            )
            """
        )
        db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute("PRAGMA quick_check").fetchone()
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def append(self, host: str, time: str, data: bytes) -> int:
        """Store one snapshot durably; returns how many old ones were dropped for room."""
        with self._transaction() as db:
            added = db.execute(
                "INSERT OR IGNORE INTO snapshots (host, time, data) VALUES (?, ?, ?)", (host, time, data)
            ).rowcount
            count = self._count + added
            dropped = max(0, count - self.max_rows)
            if dropped:
                db.execute(
                    "DELETE FROM snapshots WHERE id IN (SELECT id FROM snapshots ORDER BY id LIMIT ?)",
                    (dropped,),
                )
                self._bump(db, "dropped", dropped)
        self._count = count - dropped
        if dropped:
            log.warning(
                "spool full (%d snapshots): dropped the %d oldest", self.max_rows, dropped,
                extra={"dropped": dropped},
            )
        return dropped

    def oldest(self, limit: int) -> list[Entry]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT id, host, time, data FROM snapshots ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Entry(*row) for row in rows]

    def delete(self, ids: Iterable[int], *, rejected: bool = False) -> None:
        """Remove snapshots the sink has committed (or refused for good: ``rejected``)."""
        ids = list(ids)
        if not ids:
            return
        with self._transaction() as db:
            removed = db.executemany("DELETE FROM snapshots WHERE id = ?", [(i,) for i in ids]).rowcount
            if rejected:
                self._bump(db, "rejected", len(ids))
        self._count -= removed

    def counter(self, name: str) -> int:
        with self._mutex:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    @property
    def dropped(self) -> int:
        """Snapshots dropped because the spool was full, over the spool's life."""
        return self.counter("dropped")

    @property
    def rejected(self) -> int:
        """Snapshots the sink refused for good (bad data), over the spool's life."""
        return self.counter("rejected")

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
