"""``reading_analytics``: the readings the ETL loads, written and paged here only.

Writes (:func:`prepare`, :func:`upsert`): rows go by COPY into a session-temporary
staging table, then one ``INSERT ... SELECT ... ON CONFLICT (mongo_id) DO UPDATE``
moves them into ``reading_analytics``: no statement per row, and loading a document
twice (a run repeated after a crash) leaves one row. A row is rewritten only when
the document changed, so a repeated load changes nothing. The staging table is
temporary (``ON COMMIT DELETE ROWS``): per-connection scratch space for COPY, not
schema, so it lives here and not in a migration.

``mongo_id`` is the document's ``_id`` in a form that keeps its BSON type (see
``etl.transform.mongo_id_text``): ``{_id: 7}`` and ``{_id: "7"}`` are two rows.

Reads (:func:`fetch`, ``GET /api/reading``): ``status`` chooses what is listed:

* ``processed`` (default): rows of ``reading_analytics``, ordered by
  (reading_time, id); ``start``/``end`` filter the reading time.
* ``rejected``: open rejects (``etl_rejects``, written by
  :mod:`pgpulse.store.etl_runs`), ordered by (created_at, id); ``start``/``end``
  filter the time of rejection (a document rejected for its time has none).

A page holds up to ``limit`` items and, when more follow, a cursor: an opaque
token holding the last item's sort key. The next page continues strictly after it,
so readings arriving meanwhile never shift or repeat items.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

# -- writes ----------------------------------------------------------------------------

# (mongo_id, reading_time, source_id, payload as JSON text)
ReadingRow = tuple[str, datetime, str | None, str]


@dataclasses.dataclass
class Upserted:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # mongo_id of the rows this transaction inserted (when asked for)
    inserted_ids: set[str] = dataclasses.field(default_factory=set)


def prepare(conn: psycopg.Connection) -> None:
    """Create this session's staging table (once per connection)."""
    conn.execute(
        """
        CREATE TEMP TABLE IF NOT EXISTS pgpulse_etl_stage (
            mongo_id text NOT NULL,
            reading_time timestamptz NOT NULL,
            source_id text,
            payload jsonb NOT NULL
        ) ON COMMIT DELETE ROWS
        """
    )


_UPSERT = """
    INSERT INTO reading_analytics AS r (mongo_id, reading_time, source_id, synced_at, run_id, payload)
    SELECT mongo_id, reading_time, source_id, now(), %(run_id)s, payload FROM pgpulse_etl_stage
    ON CONFLICT (mongo_id) DO UPDATE
        SET reading_time = EXCLUDED.reading_time, source_id = EXCLUDED.source_id,
            synced_at = EXCLUDED.synced_at, run_id = EXCLUDED.run_id, payload = EXCLUDED.payload
        WHERE (r.reading_time, r.source_id, r.payload)
              IS DISTINCT FROM (EXCLUDED.reading_time, EXCLUDED.source_id, EXCLUDED.payload)
    RETURNING mongo_id, (xmax = 0) AS inserted
"""

_COUNTS = sql.SQL("""
    WITH up AS ({upsert})
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
""").format(upsert=sql.SQL(_UPSERT))

_WITH_INSERTED = sql.SQL("""
    WITH up AS ({upsert})
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
           coalesce(array_agg(mongo_id) FILTER (WHERE inserted), '{{}}') FROM up
""").format(upsert=sql.SQL(_UPSERT))


def upsert(
    conn: psycopg.Connection, rows: Iterable[ReadingRow], run_id: str, *, inserted_ids: bool = False
) -> Upserted:
    """Insert or update ``rows`` (one per document) inside the caller's transaction.

    ``inserted_ids``: also return which rows were new (the ETL's samples follow only
    new readings, so a reading loaded again never doubles its samples).
    """
    out = Upserted()
    written = 0
    with conn.cursor() as cur:
        with cur.copy(
            "COPY pgpulse_etl_stage (mongo_id, reading_time, source_id, payload) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
        if not written:
            return out
        cur.execute(_WITH_INSERTED if inserted_ids else _COUNTS, {"run_id": run_id})
        found = cur.fetchone()
    out.inserted, out.updated = found[0], found[1]
    out.unchanged = written - out.inserted - out.updated
    if inserted_ids:
        out.inserted_ids = set(found[2])
    return out


# -- reads -----------------------------------------------------------------------------

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


def _statement(query: ReadingQuery, tenant: str) -> tuple[sql.Composed, dict[str, Any]]:
    """Only the filters the query uses are in the statement (a generic plan of a
    catch-all "param IS NULL OR ..." form could not use the indexes); every value
    is a parameter, every name an Identifier or a fixed keyword."""
    table, time_col, columns, fixed = _SHAPES[query.status]
    t = sql.Identifier(time_col)
    where: list[sql.Composable] = [sql.SQL("tenant_id = %(tenant)s")]
    if fixed:
        where.append(sql.SQL(fixed))
    params: dict[str, Any] = {"limit": query.limit + 1, "tenant": tenant}
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


def fetch(conn: psycopg.Connection, query: ReadingQuery, *, tenant: str
          ) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the readings (or open rejects) of ``tenant`` and the cursor of the
    next page. The ETL loads into the default tenant."""
    if query.status not in STATUSES:
        raise ReadingQueryError("status", f"expected one of {', '.join(STATUSES)}")
    if query.order not in ORDERS:
        raise ReadingQueryError("order", "expected asc or desc")
    statement, params = _statement(query, tenant)
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
