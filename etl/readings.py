"""Reading loaded readings back: filters and keyset pages (``GET /api/reading``).

``status`` chooses what is listed:

* ``processed`` (default): rows of ``reading_analytics``, ordered by
  (reading_time, id); ``start``/``end`` filter the reading time.
* ``rejected``: open rejects, ordered by (created_at, id); ``start``/``end``
  filter the time of rejection (a document rejected for its time has none).

A page holds up to ``limit`` items and, when more follow, a cursor: an opaque
token holding the last item's sort key. The next page continues strictly after it,
so readings arriving meanwhile never shift or repeat items.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

STATUSES = ("processed", "rejected")
ORDERS = ("asc", "desc")
MAX_LIMIT = 1000


class ReadingQueryError(ValueError):
    """A reading query that cannot be answered (bad cursor, bad value); the message
    names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclasses.dataclass(frozen=True)
class ReadingQuery:
    status: str = "processed"
    start: datetime | None = None
    end: datetime | None = None
    sources: tuple[str, ...] = ()
    run_id: str | None = None
    limit: int = 100
    order: str = "asc"
    after: tuple[datetime, int] | None = None  # from the cursor


def encode_cursor(status: str, order: str, time: datetime, ident: int) -> str:
    raw = orjson.dumps({"s": status, "o": order, "t": time.isoformat(), "i": ident})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, status: str, order: str) -> tuple[datetime, int]:
    """The sort key a cursor continues after; it must come from the same status/order."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        time = datetime.fromisoformat(data["t"])
        ident = int(data["i"])
        made_for = (data["s"], data["o"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ReadingQueryError("cursor", "not a cursor returned by this endpoint") from None
    if made_for != (status, order):
        raise ReadingQueryError(
            "cursor", f"this cursor belongs to status={made_for[0]}, order={made_for[1]}"
        )
    return time, ident


# Per status: the relation, its time column, its columns, and a fixed condition.
_SHAPES = {
    "processed": (
        "reading_analytics", "reading_time",
        "id, mongo_id, reading_time, source_id, synced_at, run_id, payload", None,
    ),
    "rejected": (
        "etl_rejects", "created_at",
        "id, mongo_id, created_at, source_id, run_id, reason, document", "replayed_at IS NULL",
    ),
}


def _statement(query: ReadingQuery) -> tuple[sql.Composed, dict[str, Any]]:
    """Only the filters the query uses are in the statement (a generic plan of a
    catch-all "param IS NULL OR ..." form could not use the indexes); every value
    is a parameter, every name an Identifier or a fixed keyword."""
    table, time_col, columns, fixed = _SHAPES[query.status]
    t = sql.Identifier(time_col)
    where: list[sql.Composable] = [sql.SQL(fixed)] if fixed else []
    params: dict[str, Any] = {"limit": query.limit + 1}
    if query.start is not None:
        where.append(sql.SQL("{} >= %(start)s").format(t))
        params["start"] = query.start
    if query.end is not None:
        where.append(sql.SQL("{} < %(end)s").format(t))
        params["end"] = query.end
    if query.sources:
        where.append(sql.SQL("source_id = ANY(%(sources)s)"))
        params["sources"] = list(query.sources)
    if query.run_id is not None:
        where.append(sql.SQL("run_id = %(run_id)s"))
        params["run_id"] = query.run_id
    if query.after is not None:
        cmp = sql.SQL(">" if query.order == "asc" else "<")
        where.append(sql.SQL("({}, id) {} (%(after_t)s, %(after_i)s)").format(t, cmp))
        params["after_t"], params["after_i"] = query.after
    direction = sql.SQL("ASC" if query.order == "asc" else "DESC")
    statement = sql.SQL("SELECT {columns} FROM {table}{where} ORDER BY {t} {d}, id {d} LIMIT %(limit)s").format(
        columns=sql.SQL(columns),
        table=sql.Identifier(table),
        where=sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        t=t,
        d=direction,
    )
    return statement, params


def fetch(conn: psycopg.Connection, query: ReadingQuery) -> tuple[list[dict[str, Any]], str | None]:
    """One page of readings (or open rejects) and the cursor of the next page."""
    if query.status not in STATUSES:
        raise ReadingQueryError("status", f"expected one of {', '.join(STATUSES)}")
    if query.order not in ORDERS:
        raise ReadingQueryError("order", "expected asc or desc")
    statement, params = _statement(query)
    rows = conn.execute(statement, params).fetchall()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if query.status == "processed":
        items = [
            {"id": r[0], "mongo_id": r[1], "status": "processed", "reading_time": r[2],
             "source_id": r[3], "synced_at": r[4], "run_id": str(r[5]) if r[5] else None,
             "payload": r[6]}
            for r in rows
        ]
    else:
        items = [
            {"id": r[0], "mongo_id": r[1], "status": "rejected", "rejected_at": r[2],
             "source_id": r[3], "run_id": str(r[4]) if r[4] else None, "reason": r[5],
             "payload": r[6]}
            for r in rows
        ]
    cursor = encode_cursor(query.status, query.order, rows[-1][2], rows[-1][0]) if more else None
    return items, cursor
