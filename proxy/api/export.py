"""Export: GET /api/export streams samples or host snapshots as JSON, NDJSON or CSV.

Memory stays constant whatever the range: rows come from a server-side cursor
``PROXY_EXPORT_ITERSIZE`` at a time and leave as soon as they are formatted. The
selector, range and database are checked before the first byte, so those errors
get a proper status; a failure after streaming began can only cut the stream
short (it is logged).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
from flask import Blueprint, Response, request
from psycopg import sql
from psycopg_pool import ConnectionPool

from pgpulse.tiers import HOST_FIELDS
from proxy.api.openapi import (
    AUTH_ERRORS,
    END,
    START,
    errors,
    param,
)
from proxy.api.query import matched_series
from proxy.auth import require_scope
from proxy.errors import bad_request
from proxy.ranges import time_range
from proxy.state import state

log = logging.getLogger("proxy.export")
bp = Blueprint("export", __name__)

FORMATS = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}
CHUNK_ROWS = 1000  # rows formatted per chunk handed to the server


def _rows(pool: ConnectionPool, query: sql.Composable, params: list, itersize: int) -> Iterator[tuple]:
    with pool.connection() as conn:
        conn.execute("SET LOCAL statement_timeout = 0")  # an export may take long; fetches do not
        with conn.cursor(name="pgpulse_export") as cur:
            cur.itersize = itersize
            cur.execute(query, params)
            yield from cur


class _Csv:
    def __init__(self, header: list[str]) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        self.writer.writerow(header)

    def row(self, values: list) -> None:
        self.writer.writerow(values)

    def take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def _stream(fmt: str, header: list[str], objects: Iterator[tuple[dict | None, list]]) -> Iterator[bytes]:
    """Format (object, csv row) pairs into chunks of ``fmt``."""
    count = 0
    try:
        if fmt == "csv":
            out = _Csv(header)
            for _obj, row in objects:
                out.row(row)
                count += 1
                if count % CHUNK_ROWS == 0:
                    yield out.take().encode()
            yield out.take().encode()
            return
        parts: list[bytes] = [b"["] if fmt == "json" else []
        sep = b"," if fmt == "json" else b""
        for obj, _row in objects:
            if fmt == "json":
                parts.append((sep if count else b"") + orjson.dumps(obj))
            else:
                parts.append(orjson.dumps(obj) + b"\n")
            count += 1
            if count % CHUNK_ROWS == 0:
                yield b"".join(parts)
                parts = []
        if fmt == "json":
            parts.append(b"]")
        yield b"".join(parts)
    except GeneratorExit:
        log.info("export stopped by the client after %d rows", count)
        raise
    except Exception:
        # Headers are sent: the only signal left is an incomplete body.
        log.exception("export failed after %d rows; the stream is cut short", count)
        raise
    log.debug("export done: %d rows", count)


def _format() -> str:
    fmt = (request.args.get("format") or "ndjson").lower()
    if fmt not in FORMATS:
        raise bad_request(f"format: expected one of {', '.join(FORMATS)}", parameter="format")
    return fmt


def _iso(t: datetime) -> str:
    return t.isoformat()


def _samples(st, fmt: str) -> tuple[list[str], Iterator]:
    rng = time_range(st.settings, need_step=False)
    with st.connection() as conn:
        found = matched_series(conn, st.settings)
    meta = {sid: (name, labels, orjson.dumps(labels).decode()) for sid, name, labels, _t in found}
    query = sql.SQL(
        "SELECT series_id, time, value FROM samples WHERE series_id = ANY(%s) "
        "AND time >= %s AND time < %s ORDER BY series_id, time"
    )
    rows = _rows(st.pool, query, [list(meta), rng.start, rng.end], st.settings.export_itersize)

    def objects():
        for sid, t, v in rows:
            name, labels, labels_json = meta[sid]
            when = _iso(t)
            yield ({"name": name, "labels": labels, "time": when, "value": v} if fmt != "csv" else None,
                   [when, name, labels_json, repr(v)])

    return ["time", "name", "labels", "value"], objects()


def _hosts(st, fmt: str) -> tuple[list[str], Iterator]:
    rng = time_range(st.settings, need_step=False)
    hosts = [h for h in request.args.getlist("host") if h] or None
    field = request.args.get("field") or None
    if field is not None and field not in HOST_FIELDS:
        raise bad_request(f"field: expected one of {', '.join(HOST_FIELDS)}", parameter="field")
    host_filter = sql.SQL("") if hosts is None else sql.SQL(" AND host = ANY(%s)")
    params: list = [rng.start, rng.end] + ([hosts] if hosts is not None else [])
    if field is None:
        value = sql.SQL("data::text")
    else:
        value = sql.SQL(
            "CASE WHEN jsonb_typeof(data #> %s) = 'number' THEN (data #>> %s)::double precision END"
        )
        path = list(HOST_FIELDS[field])
        params = [path, path, *params]
    query = sql.SQL(
        "SELECT host, time, {value} FROM system_metrics WHERE time >= %s AND time < %s{hosts} "
        "ORDER BY host, time"
    ).format(value=value, hosts=host_filter)
    with st.connection() as conn:  # reach the database before streaming starts
        conn.execute("SELECT 1")
    rows = _rows(st.pool, query, params, st.settings.export_itersize)

    def objects():
        for host, t, v in rows:
            when = _iso(t)
            if field is None:
                obj = {"host": host, "time": when, "data": orjson.Fragment(v)} if fmt != "csv" else None
                yield obj, [when, host, v]
            else:
                obj = {"host": host, "time": when, "field": field, "value": v} if fmt != "csv" else None
                yield obj, [when, host, field, "" if v is None else repr(v)]

    header = ["time", "host", "data"] if field is None else ["time", "host", "field", "value"]
    return header, objects()


@bp.get("/api/export")
@require_scope("query")
def export() -> Response:
    st = state()
    fmt = _format()
    source = (request.args.get("source") or "samples").lower()
    if source == "samples":
        header, objects = _samples(st, fmt)
    elif source == "hosts":
        header, objects = _hosts(st, fmt)
    else:
        raise bad_request("source: expected samples or hosts", parameter="source")
    filename = f"pgpulse-{source}.{fmt}"
    return Response(
        _stream(fmt, header, objects),
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "X-Accel-Buffering": "no"},
    )


OPENAPI = {
    "/api/export": {"get": {
        "tags": ["export"], "operationId": "export", "x-scope": "query",
        "summary": "Stream raw samples or host snapshots as JSON, NDJSON or CSV (scope query)",
        "parameters": [
            param("source", "What to export", schema={"type": "string", "enum": ["samples", "hosts"],
                                                      "default": "samples"}),
            param("query", "Selector (source=samples)"),
            param("host", "Host (source=hosts; repeat for several; absent: all)"),
            param("field", "Headline field only (source=hosts; absent: whole snapshots)"),
            START, END,
            param("format", "Output format", schema={"type": "string", "enum": list(FORMATS),
                                                     "default": "ndjson"}),
        ],
        "responses": {"200": {"description": "The rows, streamed", "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}}}}, **errors(*AUTH_ERRORS)},
    }},
}
