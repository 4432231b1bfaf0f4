"""Prometheus remote write 1.0: POST /api/v1/write.

HTTP only: the headers are checked here, the body decoded by
:mod:`pgpulse.protocols.remote_write`, the batch written by the store. Statuses are
the remote-write specification's, since they steer Prometheus's retries:

* 204: stored;
* 400 (413 past a size limit, 415 for the wrong headers): what will never be
  accepted; Prometheus drops the request. When only some series or samples were
  refused (a bad label, a native histogram, a time outside the window), the others
  are stored and the 400 names what was refused;
* 429 with Retry-After: a series limit (PROXY_MAX_SERIES...) stops the request; 503
  (with Retry-After) when the database is down: Prometheus keeps the request in its
  WAL and sends it again.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, request

from pgpulse.protocols import remote_write
from pgpulse.store import metadata, samples
from pgpulse.store.batch import PG_EPOCH_US, Window, cache_key
from pgpulse.store.errors import CardinalityExceeded
from pgpulse.store.series import SeriesLimits
from proxy import metrics, quota
from proxy.api.ingest import gc_paused
from proxy.api.openapi import AUTH_ERRORS, errors, param
from proxy.auth import request_tenant, require_scope
from proxy.body import PROTOBUF, read_body, require_snappy_protobuf
from proxy.errors import ApiError
from proxy.ratelimit import charge_samples
from proxy.state import state

bp = Blueprint("remote_write", __name__)

CONTENT_TYPE = PROTOBUF
MESSAGE = "prometheus.WriteRequest"
VERSION = "0.1.0"
RETRY_AFTER_S = 30  # after a series limit: an operator has to act, no use retrying at once


def check_headers() -> None:
    """415 or 400 unless the request says what remote write 1.0 sends."""
    require_snappy_protobuf("remote write", MESSAGE, f" (remote write 1.0); set protobuf_message: "
                            f"{MESSAGE} in prometheus.yml's remote_write")
    version = (request.headers.get("X-Prometheus-Remote-Write-Version") or "").strip()
    if not version:
        raise ApiError(400, "missing X-Prometheus-Remote-Write-Version header: remote write 1.0 "
                       f"sends {VERSION}", header="X-Prometheus-Remote-Write-Version")
    if not version.startswith("0.1."):
        raise ApiError(415, f"unsupported remote write version {version[:40]!r}: this endpoint "
                       f"takes 1.0 ({VERSION})", header="X-Prometheus-Remote-Write-Version",
                       supported=[VERSION])


def _refused(decoded: remote_write.Decoded, stored: int) -> ApiError:
    first = decoded.refused[0]
    for r in decoded.refused:
        metrics.SAMPLES_REJECTED.labels(r.reason).inc(r.samples)
    others = len(decoded.refused) - 1
    more = f" (and {others} more)" if others else ""
    return ApiError(
        400, f"{first.series}: {first.message}{more}; {stored} sample(s) of the other series "
        "were stored", refused_series=len(decoded.refused), refused_samples=decoded.refused_samples,
        stored_samples=stored, reason=first.reason,
        refused=[{"series": r.series, "reason": r.reason, "message": r.message,
                  "samples": r.samples} for r in decoded.refused[:10]])


@bp.post("/api/v1/write")
@require_scope("ingest")
def write() -> Response:
    st = state()
    settings = st.settings
    check_headers()
    now_us = time.time_ns() // 1000 - PG_EPOCH_US
    window = Window.around(now_us, settings.max_past_s, settings.max_future_s)
    limits = SeriesLimits.from_settings(st.core)
    body = read_body(settings.max_body_bytes)
    try:
        # The cyclic GC paused while the request's rows are made, as for JSON ingest
        # (halves decoding: bench/bench_remote_write.py, docs/performance.md).
        with gc_paused():
            data = remote_write.decompress(body, settings.max_body_bytes)
            decoded = remote_write.decode(remote_write.parse(data), limits, window,
                                          settings.max_samples)
    except remote_write.PayloadTooLarge as exc:
        metrics.SAMPLES_REJECTED.labels(exc.details["reason"]).inc()
        raise ApiError(413, exc.message, **exc.details) from None
    batch = decoded.batch
    charge_samples(len(batch.rows) + len(batch.stale))
    written = 0
    if batch.keys or batch.metadata:
        cache = st.series_cache
        try:
            with st.connection() as conn:
                tenant = request_tenant()
                new = [k for k in batch.keys
                       if cache.get((tenant, cache_key(k.name, k.labels))) is None]
                if new or batch.metadata:
                    names = remote_write.families_of(batch)
                    remote_write.apply_hints(
                        batch, metadata.types(conn, names, tenant=tenant) if new else {})
                written, learned = samples.write_batch(conn, batch, limits, cache, tenant=tenant)
                quota.charge(conn, written)
        except CardinalityExceeded as exc:
            metrics.SAMPLES_REJECTED.labels("cardinality").inc(decoded.samples)
            raise ApiError(429, exc.message, headers={"Retry-After": str(RETRY_AFTER_S)},
                           **exc.details) from None
        cache.update(learned)
        metrics.SAMPLES_INGESTED.inc(written)
    if decoded.refused:
        raise _refused(decoded, written + len(batch.stale))
    return Response(status=204)


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
OPENAPI = {
    "/api/v1/write": {"post": {
        "tags": ["ingest"],
        "operationId": "remoteWrite",
        "x-scope": "ingest",
        "summary": "Prometheus remote write 1.0 (snappy-compressed protobuf WriteRequest; scope ingest)",
        "description": "The body is a prometheus.WriteRequest (remote write 1.0), snappy block "
                       "compressed. __name__ is the series name, the other labels its labels; "
                       "staleness markers are kept as markers; metadata sets the family's type, "
                       "help and unit. Series that break a rule (and native histograms) are "
                       "refused with a 400 naming them while the others are stored. See "
                       "docs/sending-data.md.",
        "parameters": [
            param("Content-Encoding", "snappy", where="header", required=True,
                  schema={"type": "string", "enum": ["snappy"]}),
            param("X-Prometheus-Remote-Write-Version", "0.1.0", where="header", required=True,
                  schema={"type": "string", "enum": ["0.1.0"]}),
        ],
        "requestBody": {"required": True, "content": {CONTENT_TYPE: {
            "schema": {"type": "string", "format": "binary"}}}},
        "responses": {
            **errors(*AUTH_ERRORS, 413),
            "204": {"description": "Stored"},
            "400": {"description": "Not a snappy-compressed WriteRequest, or some series or "
                                   "samples refused (the others were stored): the message "
                                   "names them. Prometheus does not retry.", "content": _ERROR},
            "415": {"description": "Wrong Content-Encoding, Content-Type or remote write version",
                    "content": _ERROR},
            "429": {"description": "A series limit was reached, or the batch would pass the "
                                   "monthly sample quota: nothing written (Retry-After)",
                    "content": _ERROR},
        },
    }},
}
