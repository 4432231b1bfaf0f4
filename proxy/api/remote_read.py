"""Prometheus remote read: POST /api/v1/read, so a Prometheus server can use pgpulse
as its long-term store and run PromQL over pgpulse's data.

HTTP only: headers are checked here, the body decoded and the answer encoded by
:mod:`pgpulse.protocols.remote_read`, series found and samples read by the store's
readers (:mod:`pgpulse.store.series_reads`, :mod:`pgpulse.store.sample_reads`).
Errors are pgpulse's JSON errors (Prometheus logs the body of a non-2xx answer):

* 400: not a snappy-compressed ReadRequest, a bad query, or only
  STREAMED_XOR_CHUNKS accepted; 413 past PROXY_MAX_BODY_BYTES; 415 for the wrong
  Content-Type or Content-Encoding;
* 422: the answer would pass a limit (PROXY_MAX_QUERY_SERIES series per query,
  PROXY_MAX_READ_SAMPLES samples per request), named in the message.
"""

from __future__ import annotations

from flask import Blueprint, Response

from pgpulse.protocols import remote_read
from pgpulse.store import sample_reads
from pgpulse.store.series_reads import find_series
from proxy.api.openapi import AUTH_ERRORS, errors, param
from proxy.auth import request_tenant, require_scope
from proxy.body import PROTOBUF, read_body, require_snappy_protobuf
from proxy.errors import ApiError
from proxy.state import state

bp = Blueprint("remote_read", __name__)

CONTENT_TYPE = PROTOBUF
MESSAGE = "prometheus.ReadRequest"
SERIES_PER_READ = 200  # series whose samples are read in one statement


def check_headers() -> None:
    """415 unless the request says what Prometheus's remote-read client sends."""
    require_snappy_protobuf("remote read", MESSAGE)


@bp.post("/api/v1/read")
@require_scope("query")
def read() -> Response:
    st = state()
    settings = st.settings
    check_headers()
    body = read_body(settings.max_body_bytes)
    try:
        data = remote_read.decompress(body, settings.max_body_bytes)
    except remote_read.PayloadTooLarge as exc:
        raise ApiError(413, exc.message, **exc.details) from None
    asked = remote_read.queries(remote_read.parse(data))
    max_series, max_samples = settings.max_query_series, settings.max_read_samples
    results: list[list[remote_read.ReadSeries]] = []
    total = 0
    with st.read_connection() as conn:
        for i, q in enumerate(asked):
            found = find_series(conn, q.selector, max_series, tenant=request_tenant())
            if len(found) > max_series:
                raise ApiError(422, f"query {i} matches more than {max_series} series; the limit "
                               "is PROXY_MAX_QUERY_SERIES: narrow the selector",
                               limit=max_series, setting="PROXY_MAX_QUERY_SERIES", query=i)
            ids = [row[0] for row in found]
            points: dict[int, sample_reads.Points] = {}
            markers: dict[int, list[int]] = {}
            # A few series at a time, the limit checked after each: a request far past
            # it is refused before all of it is in memory.
            for at in range(0, len(ids), SERIES_PER_READ):
                chunk = ids[at:at + SERIES_PER_READ]
                read = sample_reads.read_samples(conn, chunk, q.start_ms, q.end_ms)
                marks = sample_reads.read_markers(conn, chunk, q.start_ms, q.end_ms)
                total += sum(len(t) for t, _ in read.values()) + sum(map(len, marks.values()))
                if total > max_samples:
                    raise ApiError(422, f"the answer would hold more than {max_samples} samples; "
                                   "the limit is PROXY_MAX_READ_SAMPLES: shorten the range or "
                                   "narrow the selector", limit=max_samples,
                                   setting="PROXY_MAX_READ_SAMPLES", query=i)
                points.update(read)
                markers.update(marks)
            series = []
            for sid, name, labels, _type in found:
                times, values = points.get(sid, ([], []))
                marks = markers.get(sid, [])
                if times or marks:  # a series with nothing in the range is not in the answer
                    series.append(remote_read.ReadSeries(name, labels, times, values, marks))
            results.append(series)
    return Response(remote_read.encode(results), status=200, headers={
        "Content-Type": CONTENT_TYPE, "Content-Encoding": "snappy"})


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
OPENAPI = {
    "/api/v1/read": {"post": {
        "tags": ["query"],
        "operationId": "remoteRead",
        "x-scope": "query",
        "summary": "Prometheus remote read (snappy-compressed protobuf ReadRequest; scope query)",
        "description": "The body is a prometheus.ReadRequest, snappy block compressed. Each "
                       "query's label matchers (EQ, NEQ, RE, NRE, on any label including "
                       "__name__) select series; the answer is a snappy-compressed "
                       "prometheus.ReadResponse (the SAMPLES response type) with one "
                       "QueryResult per query: the raw samples in [start, end] (both "
                       "included), staleness markers as Prometheus's StaleNaN. A request "
                       "accepting only STREAMED_XOR_CHUNKS is a 400. See docs/api.md.",
        "parameters": [
            param("Content-Encoding", "snappy", where="header", required=True,
                  schema={"type": "string", "enum": ["snappy"]}),
        ],
        "requestBody": {"required": True, "content": {CONTENT_TYPE: {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {
            **errors(*AUTH_ERRORS, 413),
            "200": {"description": "A snappy-compressed prometheus.ReadResponse "
                                   "(Content-Encoding: snappy)",
                    "content": {CONTENT_TYPE: {"schema": {"type": "string",
                                                          "format": "binary"}}}},
            "415": {"description": "Wrong Content-Encoding or Content-Type", "content": _ERROR},
            "422": {"description": "The answer would pass PROXY_MAX_QUERY_SERIES or "
                                   "PROXY_MAX_READ_SAMPLES (named in the message)",
                    "content": _ERROR},
        },
    }},
}
