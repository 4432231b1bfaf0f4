"""Prometheus remote write 1.0: a snappy-compressed protobuf ``WriteRequest`` -> a Batch.

What a request becomes (docs/sending-data.md says it for users):

* each ``TimeSeries``: ``__name__`` is the series name, the other labels its labels
  (a label with an empty value is no label, as in Prometheus); its samples are rows,
  timestamps in milliseconds;
* a sample whose value has the bit pattern of Prometheus's staleness marker
  (:data:`STALE_NAN_BITS`, one NaN among many) is a staleness marker
  (``Batch.stale``), never a value; any other NaN or infinity is a value, as
  Prometheus stores it (a summary quantile with no observations is NaN);
* ``metadata`` (type, help, unit per metric family) goes to ``Batch.metadata``;
* classic histograms and summaries arrive as their ``_bucket``/``_sum``/``_count``
  and quantile series and are stored as those series;
* exemplars are ignored; native histograms are refused (the series, with a message).

A series that breaks a rule (no or a bad ``__name__``, a bad label, a native
histogram) or a sample outside the accepted time window is *refused* and listed in
:attr:`Decoded.refused`; the rest of the request is still stored. Prometheus drops
a request answered 4xx instead of retrying it, so refusing all of it for one bad
series would lose the good ones for good.

The type of a new series (gauge or counter, the only two a series has) is a *hint*
used when the series is created, never a declared type that could conflict with
the catalogue: from the family's metadata (in the request or stored earlier,
:func:`apply_hints`), else from Prometheus's naming conventions (``_total``, and
``_bucket`` with an ``le`` label, are counters).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping

import cramjam
from google.protobuf.message import DecodeError

from pgpulse.protocols.prompb import MetricMetadata, WriteRequest
from pgpulse.store.batch import PG_EPOCH_US, Batch, Window, cache_key
from pgpulse.store.errors import InvalidSample
from pgpulse.store.series import SeriesLimits, labels_problem, metric_name_problem

STALE_NAN_BITS = 0x7FF0000000000002  # Prometheus's value.StaleNaN
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
_BITS = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")

# MetricMetadata.MetricType -> the type metric_metadata keeps (pgpulse.store.metadata.TYPES).
METADATA_TYPES = {
    MetricMetadata.UNKNOWN: "unknown",
    MetricMetadata.COUNTER: "counter",
    MetricMetadata.GAUGE: "gauge",
    MetricMetadata.HISTOGRAM: "histogram",
    MetricMetadata.GAUGEHISTOGRAM: "gaugehistogram",
    MetricMetadata.SUMMARY: "summary",
    MetricMetadata.INFO: "info",
    MetricMetadata.STATESET: "stateset",
}
# The series of a family with these suffixes, by family type: what a series of it is.
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum")
_COUNTER_PARTS = {"histogram": {"_bucket", "_count", "_sum"}, "summary": {"_count", "_sum"},
                  "counter": {"_total"}}


class PayloadError(InvalidSample):
    """The body is not a snappy-compressed WriteRequest (400)."""


class PayloadTooLarge(InvalidSample):
    """The body, decompressed or counted in samples, passes a limit (413)."""


@dataclasses.dataclass
class Refusal:
    series: str  # the series as Prometheus writes it, name{labels}
    reason: str  # counted in pgpulse_proxy_samples_rejected_total
    message: str
    samples: int  # samples (and markers) of it refused


@dataclasses.dataclass
class Decoded:
    batch: Batch
    samples: int  # samples in the request (values and staleness markers)
    refused: list[Refusal] = dataclasses.field(default_factory=list)
    refused_metadata: list[str] = dataclasses.field(default_factory=list)

    @property
    def refused_samples(self) -> int:
        return sum(r.samples for r in self.refused)


# -- the body -------------------------------------------------------------------------


def uncompressed_length(data: bytes) -> int:
    """The length a snappy block says it decompresses to (its leading varint)."""
    length = shift = 0
    for i, byte in enumerate(data[:5]):
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length
        shift += 7
        if i == 4:
            break
    raise PayloadError("body is not snappy-compressed: no valid length header (remote write "
                       "bodies are snappy block format, not framed)", reason="invalid_snappy")


def decompress(data: bytes, limit: int, message: str = "WriteRequest") -> bytes:
    """Snappy block decompression, refusing a body that would decompress past ``limit``
    bytes before decompressing anything (a compression bomb costs nothing). ``message``
    names what the body should hold (remote read sends a ReadRequest the same way)."""
    if not data:
        raise PayloadError(f"empty body: expected a snappy-compressed {message}",
                           reason="invalid_snappy")
    length = uncompressed_length(data)
    if length > limit:
        raise PayloadTooLarge(f"body decompresses to {length} bytes; the limit is {limit} "
                              "(PROXY_MAX_BODY_BYTES)", reason="too_large", limit_bytes=limit)
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as exc:
        raise PayloadError(f"body is not valid snappy: {exc}", reason="invalid_snappy") from None


def parse(data: bytes) -> WriteRequest:
    """The WriteRequest in ``data`` (decompressed)."""
    req = WriteRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise PayloadError(f"body is not a valid protobuf WriteRequest: {exc}",
                           reason="invalid_protobuf") from None
    return req


# -- the request -> a batch -----------------------------------------------------------


def series_text(name: str | None, labels: Mapping[str, str]) -> str:
    """A series as Prometheus writes it, cut to a readable length."""
    inner = ",".join(f'{k}="{v[:60]}"' for k, v in sorted(labels.items()))
    return f"{name or ''}{{{inner}}}"[:300]


def _labels(ts) -> tuple[str | None, dict[str, str], str | None]:
    """(name, labels, problem) of a TimeSeries."""
    labels: dict[str, str] = {}
    name: str | None = None
    problem = None
    for label in ts.labels:
        if label.name == "__name__":
            if name is not None:
                problem = "label __name__ given twice"
            name = label.value
        elif label.name in labels:
            problem = f"label {label.name!r} given twice"
        elif label.value:
            labels[label.name] = label.value
    return name, labels, problem


def decode(req: WriteRequest, limits: SeriesLimits, window: Window, max_samples: int) -> Decoded:
    """The Batch of a WriteRequest, with what was refused and why."""
    total = 0
    for ts in req.timeseries:
        total += len(ts.samples) + len(ts.histograms)
    if total > max_samples:
        raise PayloadTooLarge(f"{total} samples in one request; the limit is {max_samples} "
                              "(PROXY_MAX_SAMPLES_PER_REQUEST: lower queue_config.max_samples_per_send)",
                              reason="too_many_samples", count=total, limit=max_samples)
    batch = Batch()
    out = Decoded(batch, total)
    rows, stale = batch.rows, batch.stale
    lo, hi = window.lo_us, window.hi_us
    good: set = set()  # (name, sorted labels) already found good in this request
    to_bits, from_double = _BITS.unpack, _DOUBLE.pack
    for ts in req.timeseries:
        name, labels, problem = _labels(ts)
        key = cache_key(name or "", labels)
        reason = "invalid_labels"
        if problem is None and key not in good:
            if name is None:
                problem, reason = "no __name__ label: a series needs a metric name", "invalid_name"
            else:
                problem = metric_name_problem(name)
                if problem is not None:
                    reason = "invalid_name"
                else:
                    bad = labels_problem(labels, limits)
                    if bad is not None:
                        problem, reason = bad[1], bad[2]
        if problem is None and len(ts.histograms):
            problem, reason = ("native histograms are not supported: send classic histograms "
                               "(send_native_histograms: false in remote_write, or scrape without "
                               "the native-histograms feature)"), "native_histogram"
        if problem is not None:
            out.refused.append(Refusal(series_text(name, labels), reason, problem,
                                       len(ts.samples) + len(ts.histograms)))
            continue
        good.add(key)
        if not len(ts.samples):
            continue
        k = batch.series(name, labels)
        late = 0
        for s in ts.samples:
            t = s.timestamp * 1000 - PG_EPOCH_US
            if not lo <= t <= hi:
                late += 1
                continue
            v = s.value
            if v != v and to_bits(from_double(v))[0] == STALE_NAN_BITS:
                stale.append((t, k))
            else:
                rows.append((t, k, v))
        if late:
            out.refused.append(Refusal(
                series_text(name, labels), "out_of_window",
                f"{late} sample(s) outside the accepted window (now - {window.max_past_s}s .. "
                f"now + {window.max_future_s}s: PROXY_MAX_SAMPLE_AGE_SECONDS, "
                "PROXY_MAX_SAMPLE_FUTURE_SECONDS)", late))
    for m in req.metadata:
        family = m.metric_family_name
        problem = metric_name_problem(family)
        typ = METADATA_TYPES.get(m.type)
        if problem is not None or typ is None:
            out.refused_metadata.append(family[:200])
            continue
        batch.metadata[family] = (typ, m.help, m.unit)
    return out


# -- series types ---------------------------------------------------------------------


def families_of(batch: Batch) -> set[str]:
    """The metric family names the batch's series may belong to (for a metadata read)."""
    names: set[str] = set()
    for k in batch.keys:
        names.add(k.name)
        for suffix in _SUFFIXES:
            if k.name.endswith(suffix):
                names.add(k.name[: -len(suffix)])
    return names


def series_type(name: str, labels: Mapping[str, str], families: Mapping[str, str]) -> str | None:
    """gauge or counter for a new series ``name``, from its family's metadata type
    (``families``: family name -> type), else from the naming conventions; None: no
    idea (the store's default, gauge)."""
    typ = families.get(name)
    if typ is not None:
        if typ in ("counter", "gauge"):
            return typ
        if typ in ("summary", "gaugehistogram", "info", "stateset"):
            return "gauge"  # a quantile, or a gauge-like family
        # a histogram named like a series: fall through to the suffixes
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            typ = families.get(name[: -len(suffix)])
            if typ is not None:
                return "counter" if suffix in _COUNTER_PARTS.get(typ, ()) else "gauge"
    if name.endswith("_total") or (name.endswith("_bucket") and "le" in labels):
        return "counter"
    return None


def apply_hints(batch: Batch, stored: Mapping[str, str]) -> None:
    """Give each series of ``batch`` its creation type hint, from the batch's own
    metadata first, then ``stored`` (family name -> type, from metric_metadata)."""
    families = dict(stored)
    families.update({name: typ for name, (typ, _, _) in batch.metadata.items()})
    for k in batch.keys:
        k.hint = series_type(k.name, k.labels, families)


def is_stale(value: float) -> bool:
    """Whether ``value`` is Prometheus's staleness marker (by its bits: every NaN
    compares unequal, and only this one pattern is a marker)."""
    return math.isnan(value) and _BITS.unpack(_DOUBLE.pack(value))[0] == STALE_NAN_BITS
