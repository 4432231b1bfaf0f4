"""Prometheus remote read: a snappy-compressed protobuf ``ReadRequest`` in, a
snappy-compressed ``ReadResponse`` (the SAMPLES response type) out.

Pure decoding and encoding: no database, no HTTP. What a request means:

* each ``Query`` is a time range [start_timestamp_ms, end_timestamp_ms] (both ends
  included, as Prometheus's own storage answers it) and label matchers (EQ, NEQ,
  RE, NRE on any label, ``__name__`` included) -> a :class:`pgpulse.selector.Selector`;
* the answer holds one ``QueryResult`` per query, in the request's order, with each
  matched series that has samples or staleness markers in the range; its samples
  oldest first, a staleness marker being a sample whose value is Prometheus's
  StaleNaN (:data:`pgpulse.protocols.remote_write.STALE_NAN_BITS`), as Prometheus's
  own remote-read answers carry them, so PromQL ends the series there;
* response types: an empty ``accepted_response_types`` means SAMPLES (the only type
  Prometheus 2.x's remote-read client asks for); a list naming SAMPLES anywhere gets
  SAMPLES; a list of STREAMED_XOR_CHUNKS alone is refused (the specification: when
  no accepted type is implemented, the server answers an error).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import cramjam
from google.protobuf.message import DecodeError

from pgpulse.protocols import remote_write
from pgpulse.protocols.prompb import LabelMatcher, ReadRequest, ReadResponse
from pgpulse.protocols.remote_write import STALE_NAN, PayloadError, PayloadTooLarge
from pgpulse.selector import Matcher, Selector
from pgpulse.store.errors import InvalidSample

__all__ = ["PayloadError", "PayloadTooLarge", "UnsupportedResponseType", "ReadQuery",
           "ReadSeries", "decompress", "parse", "queries", "encode"]

_OPS = {LabelMatcher.EQ: "=", LabelMatcher.NEQ: "!=", LabelMatcher.RE: "=~",
        LabelMatcher.NRE: "!~"}


class UnsupportedResponseType(InvalidSample):
    """The request accepts no response type pgpulse answers (only SAMPLES is)."""


@dataclasses.dataclass(frozen=True)
class ReadQuery:
    start_ms: int
    end_ms: int
    selector: Selector


@dataclasses.dataclass
class ReadSeries:
    """One series of an answer: its name, labels, and samples and markers."""

    name: str
    labels: Mapping[str, str]
    times: list[int]  # ms, oldest first
    values: list[float]
    markers: list[int]  # ms of staleness markers, oldest first


def decompress(data: bytes, limit: int) -> bytes:
    """Snappy block decompression bounded by ``limit`` (PROXY_MAX_BODY_BYTES), as for
    remote write."""
    return remote_write.decompress(data, limit, "ReadRequest")


def parse(data: bytes) -> ReadRequest:
    """The ReadRequest in ``data`` (decompressed)."""
    req = ReadRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadError(f"body is not a valid protobuf ReadRequest: {exc}",
                           reason="invalid_protobuf") from None
    return req


def queries(req: ReadRequest) -> list[ReadQuery]:
    """The queries of a request, checked: the response type, ranges and matchers."""
    accepted = list(req.accepted_response_types)
    if accepted and ReadRequest.SAMPLES not in accepted:
        names = ", ".join(ReadRequest.ResponseType.Name(t) if t in (0, 1) else str(t)
                          for t in accepted)
        raise UnsupportedResponseType(
            f"none of the accepted response types ({names}) is supported: pgpulse answers "
            "SAMPLES only", reason="unsupported_response_type", supported=["SAMPLES"])
    if not req.queries:
        raise PayloadError("the ReadRequest has no queries", reason="no_queries")
    out = []
    for i, q in enumerate(req.queries):
        if q.end_timestamp_ms < q.start_timestamp_ms:
            raise PayloadError(f"query {i}: end_timestamp_ms {q.end_timestamp_ms} is before "
                               f"start_timestamp_ms {q.start_timestamp_ms}", reason="bad_range")
        matchers = []
        for m in q.matchers:
            op = _OPS.get(m.type)
            if op is None:
                raise PayloadError(f"query {i}: unknown label matcher type {m.type}",
                                   reason="bad_matcher")
            if not m.name:
                raise PayloadError(f"query {i}: a label matcher has no label name",
                                   reason="bad_matcher")
            matchers.append(Matcher(m.name, op, m.value))
        if not matchers:
            raise PayloadError(f"query {i}: no label matchers: a query needs at least one",
                               reason="bad_matcher")
        out.append(ReadQuery(q.start_timestamp_ms, q.end_timestamp_ms, Selector(tuple(matchers))))
    return out


def _merged(s: ReadSeries) -> Iterable[tuple[int, float]]:
    """Samples and markers of one series in time order; a marker at the time of a
    sample (both truncated to the same millisecond) gives way to the sample."""
    if not s.markers:
        return zip(s.times, s.values, strict=True)
    points = dict(zip(s.markers, [STALE_NAN] * len(s.markers), strict=True))
    points.update(zip(s.times, s.values, strict=True))
    return sorted(points.items())


def encode(results: Iterable[Iterable[ReadSeries]]) -> bytes:
    """The snappy-compressed ReadResponse of each query's series, in order. Labels
    are sorted by name (``__name__`` among them), as Prometheus sends them."""
    resp = ReadResponse()
    for series in results:
        result = resp.results.add()
        for s in series:
            ts = result.timeseries.add()
            labels = {**s.labels, "__name__": s.name}
            for name in sorted(labels):
                ts.labels.add(name=name, value=labels[name])
            for t, v in _merged(s):
                ts.samples.add(value=v, timestamp=t)
    return bytes(cramjam.snappy.compress_raw(resp.SerializeToString()))
