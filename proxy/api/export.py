"""Export: GET /api/export streams samples or host snapshots as JSON, NDJSON or CSV.

Memory stays constant whatever the range: rows come from a server-side cursor
``PROXY_EXPORT_ITERSIZE`` at a time (pgpulse.store.exports) and leave in chunks of
at most CHUNK_ROWS rows or about CHUNK_BYTES bytes. The selector, range, database and first rows are checked
before the first byte, so those errors get a proper status; a failure after
streaming began can only cut the stream short (it is logged). A client that stops
reading holds no database session: after PROXY_EXPORT_IDLE_TIMEOUT_MS the export
ends its transaction and returns its connection, and the stream is cut short.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import datetime

import orjson
from flask import Blueprint, Response, request

from pgpulse.store import exports
from pgpulse.tiers import HOST_FIELDS
from proxy.api.openapi import (
    AUTH_ERRORS,
    END,
    START,
    errors,
    param,
)
from proxy.auth import request_tenant, require_scope
from proxy.errors import bad_request
from proxy.ranges import host_list, matched_series, selector, time_range
from proxy.state import ProxyState, state

log = logging.getLogger("proxy.export")
bp = Blueprint("export", __name__)

FORMATS = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}
# A chunk goes to the server once it holds CHUNK_ROWS rows or CHUNK_BYTES bytes. The byte
# bound matters for wide rows (whole host snapshots): by row count alone, 1000 snapshots
# would be formatted in memory before the first byte left, and a client that stops
# reading would never hold the stream up, so its export's idle timeout could not act.
CHUNK_ROWS = 1000
CHUNK_BYTES = 64 * 1024


def _limits(st: ProxyState) -> exports.ExportLimits:
    return exports.ExportLimits(
        itersize=st.settings.export_itersize,
        statement_timeout_ms=st.settings.export_statement_timeout_ms,
        idle_timeout_ms=st.settings.export_idle_timeout_ms,
    )


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
            rows = 0
            for _obj, row in objects:
                out.row(row)
                count += 1
                rows += 1
                if rows == CHUNK_ROWS or out.buffer.tell() >= CHUNK_BYTES:
                    yield out.take().encode()
                    rows = 0
            yield out.take().encode()
            return
        parts: list[bytes] = [b"["] if fmt == "json" else []
        size = 0
        sep = b"," if fmt == "json" else b""
        for obj, _row in objects:
            if fmt == "json":
                part = (sep if count else b"") + orjson.dumps(obj)
            else:
                part = orjson.dumps(obj) + b"\n"
            parts.append(part)
            size += len(part)
            count += 1
            if len(parts) >= CHUNK_ROWS or size >= CHUNK_BYTES:
                yield b"".join(parts)
                parts = []
                size = 0
        if fmt == "json":
            parts.append(b"]")
        yield b"".join(parts)
    except GeneratorExit:
        log.info("export stopped by the client after %d rows", count)
        raise
    except exports.ExportAborted as exc:
        log.warning("export cut short after %d rows: %s", count, exc)
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


def _samples(st: ProxyState, fmt: str) -> tuple[list[str], exports.RowStream, Iterator]:
    rng = time_range(st.settings, need_step=False)
    wanted = selector()
    with st.read_connection() as conn:
        found = matched_series(conn, st.settings, wanted, tenant=request_tenant())
    meta = {sid: (name, labels, orjson.dumps(labels).decode()) for sid, name, labels, _t in found}
    rows = exports.samples(st.read_pool, list(meta), rng.start, rng.end, _limits(st),
                           tenant=request_tenant())

    def objects():
        for sid, t, v in rows:
            name, labels, labels_json = meta[sid]
            when = _iso(t)
            yield ({"name": name, "labels": labels, "time": when, "value": v} if fmt != "csv" else None,
                   [when, name, labels_json, repr(v)])

    return ["time", "name", "labels", "value"], rows, objects()


def _hosts(st: ProxyState, fmt: str) -> tuple[list[str], exports.RowStream, Iterator]:
    rng = time_range(st.settings, need_step=False)
    hosts = host_list()
    field = request.args.get("field") or None
    if field is not None and field not in HOST_FIELDS:
        raise bad_request(f"field: expected one of {', '.join(HOST_FIELDS)}", parameter="field")
    path = None if field is None else HOST_FIELDS[field]
    rows = exports.snapshots(st.read_pool, hosts, path, rng.start, rng.end, _limits(st),
                             tenant=request_tenant())

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
    return header, rows, objects()


@bp.get("/api/export")
@require_scope("query")
def export() -> Response:
    st = state()
    fmt = _format()
    source = (request.args.get("source") or "samples").lower()
    if source == "samples":
        header, rows, objects = _samples(st, fmt)
    elif source == "hosts":
        header, rows, objects = _hosts(st, fmt)
    else:
        raise bad_request("source: expected samples or hosts", parameter="source")
    filename = f"pgpulse-{source}.{fmt}"
    response = Response(
        _stream(fmt, header, objects),
        mimetype=FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                 "X-Accel-Buffering": "no"},
    )
    # Also when the server closes a stream it never started (the client left at once).
    response.call_on_close(rows.close)
    return response


OPENAPI = {
    "/api/export": {"get": {
        "tags": ["export"], "operationId": "export", "x-scope": "query",
        "summary": "Stream raw samples or host snapshots as JSON, NDJSON or CSV (scope query)",
        "parameters": [
            param("source", "What to export", schema={"type": "string", "enum": ["samples", "hosts"],
                                                      "default": "samples"}),
            param("query", "Selector (source=samples: required, not blank)",
                  schema={"type": "string", "maxLength": 4096}),
            param("host", "Host (source=hosts; repeat for several; absent: all)",
                  schema={"type": "array", "items": {"type": "string"}}),
            param("field", "Headline field only (source=hosts; absent: whole snapshots)",
                  schema={"type": "string", "enum": list(HOST_FIELDS)}),
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
