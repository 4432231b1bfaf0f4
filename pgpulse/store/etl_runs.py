"""``etl_runs`` and ``etl_rejects``: the record of ETL runs and of the documents
they rejected, written here only.

A run holds a PostgreSQL session advisory lock (:func:`try_lock`) for its whole
life, so two runs never overlap whichever process or host starts them. Its record
is ``running`` while it goes, then ``succeeded`` or ``failed`` with its error; a
``running`` record found by a run that holds the lock belongs to a process that
died and is closed as failed (:func:`close_abandoned`).

A reject is *open* until its document loads (``replayed_at`` set by
:func:`close_rejects`). A document has at most one open reject: a run that rejects
it again updates that reject's reason and run. ``mongo_id`` is the same typed key
as ``reading_analytics.mongo_id``, so a reject of ``{_id: 7}`` is not closed by
loading ``{_id: "7"}``.

The caller owns the transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

LOCK_NAME = "pgpulse_etl"  # the advisory lock key is hashtext() of this
ABANDONED = "abandoned: the process running it stopped before the run finished"

# -- the lock and the run record ---------------------------------------------------------


def clock(conn: psycopg.Connection) -> datetime:
    """The database's clock: the one clock for claim leases, which every process
    sharing the database agrees on."""
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def try_lock(conn: psycopg.Connection) -> bool:
    """Take the ETL's session advisory lock if no other session holds it."""
    return conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_NAME,)).fetchone()[0]


def unlock(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_NAME,))


def running_run(conn: psycopg.Connection) -> str | None:
    """The id of the newest run recorded as running, if any."""
    row = conn.execute(
        "SELECT id FROM etl_runs WHERE status = 'running' ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else None


def close_abandoned(conn: psycopg.Connection) -> None:
    """Close ``running`` records as failed: call only while holding the lock, when no
    other run can be going."""
    conn.execute(
        "UPDATE etl_runs SET status = 'failed', finished_at = now(), error = %s WHERE status = 'running'",
        (ABANDONED,),
    )


def start(conn: psycopg.Connection, run_id: str, trigger: str, read_from: str) -> None:
    conn.execute(
        "INSERT INTO etl_runs (id, trigger, status, read_from) VALUES (%s, %s, 'running', %s)",
        (run_id, trigger, read_from),
    )


def add_batch(conn: psycopg.Connection, run_id: str, claimed: int, loaded: int, rejected: int) -> None:
    """Add one batch's counts (inside the batch's transaction)."""
    conn.execute(
        "UPDATE etl_runs SET claimed = claimed + %s, loaded = loaded + %s, rejected = rejected + %s "
        "WHERE id = %s",
        (claimed, loaded, rejected, run_id),
    )


def succeed(conn: psycopg.Connection, run_id: str, warning: str | None = None) -> None:
    conn.execute(
        "UPDATE etl_runs SET status = 'succeeded', finished_at = now(), warning = %s WHERE id = %s",
        (warning, run_id),
    )


def fail(conn: psycopg.Connection, run_id: str, error: str | None) -> None:
    conn.execute(
        "UPDATE etl_runs SET status = 'failed', finished_at = now(), error = %s "
        "WHERE id = %s AND status = 'running'",
        (error, run_id),
    )


RUN_COLUMNS = ("id", "status", "trigger", "started_at", "finished_at", "claimed", "loaded",
               "rejected", "error", "read_from", "warning")
_RUN_SELECT = sql.SQL(", ").join(map(sql.Identifier, RUN_COLUMNS))


def _run_row(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(RUN_COLUMNS, row, strict=True))
    out["id"] = str(out["id"])
    finished = out["finished_at"]
    out["duration_s"] = round((finished - out["started_at"]).total_seconds(), 3) if finished else None
    return out


def list_runs(conn: psycopg.Connection, limit: int = 50, status: str | None = None,
              tenant: str | None = None) -> list[dict[str, Any]]:
    """The most recent runs (of ``tenant``; None: of all, for the CLI), newest first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM etl_runs WHERE (%(status)s::text IS NULL OR status = %(status)s) "
            "AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
            "ORDER BY started_at DESC, id LIMIT %(limit)s"
        ).format(_RUN_SELECT),
        {"status": status, "limit": limit, "tenant": tenant},
    ).fetchall()
    return [_run_row(r) for r in rows]


def get_run(conn: psycopg.Connection, run_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    """Run ``run_id`` (when it is one of ``tenant``'s; None: of any tenant)."""
    row = conn.execute(
        sql.SQL("SELECT {} FROM etl_runs WHERE id = %s AND (%s::text IS NULL OR tenant_id = %s)"
                ).format(_RUN_SELECT),
        (run_id, tenant, tenant),
    ).fetchone()
    return _run_row(row) if row else None


# -- rejects -----------------------------------------------------------------------------

# (mongo_id, reason, document as JSON text, source_id)
RejectRow = tuple[str, str, str, str | None]

_REJECTS = """
    INSERT INTO etl_rejects (run_id, mongo_id, reason, document, source_id)
    SELECT %s, m, r, d::jsonb, s FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS t(m, r, d, s)
    ON CONFLICT (mongo_id) WHERE replayed_at IS NULL DO UPDATE
        SET run_id = EXCLUDED.run_id, reason = EXCLUDED.reason, document = EXCLUDED.document,
            source_id = EXCLUDED.source_id, created_at = now()
"""


def write_rejects(conn: psycopg.Connection, run_id: str, rejects: Iterable[RejectRow]) -> int:
    """Record rejects (one open reject per document: the first of a mongo_id wins)."""
    unique: dict[str, RejectRow] = {}
    for reject in rejects:
        unique.setdefault(reject[0], reject)
    if not unique:
        return 0
    rows = list(unique.values())
    conn.execute(
        _REJECTS,
        (run_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]),
    )
    return len(rows)


def close_rejects(conn: psycopg.Connection, mongo_ids: Sequence[str]) -> None:
    """Close the open rejects of documents that now loaded: their cause was fixed."""
    if mongo_ids:
        conn.execute(
            "UPDATE etl_rejects SET replayed_at = now() "
            "WHERE replayed_at IS NULL AND mongo_id = ANY(%s::text[])",
            (list(mongo_ids),),
        )


REJECT_COLUMNS = ("id", "run_id", "mongo_id", "reason", "source_id", "created_at", "replayed_at")


def _reject_row(row: Sequence[Any], with_document: bool) -> dict[str, Any]:
    out = dict(zip(REJECT_COLUMNS, row[: len(REJECT_COLUMNS)], strict=True))
    out["run_id"] = str(out["run_id"]) if out["run_id"] else None
    if with_document:
        out["document"] = row[len(REJECT_COLUMNS)]
    return out


def list_rejects(
    conn: psycopg.Connection,
    *,
    open_only: bool = True,
    ids: Sequence[int] | None = None,
    limit: int = 100,
    with_document: bool = True,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Rejects (of ``tenant``; None: of all), newest first: open ones only unless
    ``open_only`` is False."""
    rows = conn.execute(
        sql.SQL(
            "SELECT {}, document FROM etl_rejects "
            "WHERE (NOT %(open)s OR replayed_at IS NULL) "
            "AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[])) "
            "AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s) "
            "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        ).format(sql.SQL(", ").join(map(sql.Identifier, REJECT_COLUMNS))),
        {"open": open_only, "ids": list(ids) if ids is not None else None, "limit": limit,
         "tenant": tenant},
    ).fetchall()
    return [_reject_row(r, with_document) for r in rows]
