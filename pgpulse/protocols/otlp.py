"""OpenTelemetry OTLP metrics: an ``ExportMetricsServiceRequest`` mapped to a store batch.

The mapping is the one of the OpenTelemetry specification's Prometheus
compatibility section ("OTLP Metric points to Prometheus"), so a metric reads the
same in pgpulse as in Prometheus fed by the same exporter:

=========================================  =============================================
OTLP                                       pgpulse series (type)
=========================================  =============================================
Gauge                                      ``name`` (gauge); unit ``1`` adds ``_ratio``
Sum, monotonic, cumulative                 ``name_total`` (counter)
Sum, not monotonic, cumulative             ``name`` (gauge)
Sum, delta temporality                     refused: the exporter is told to send cumulative
Histogram (explicit buckets), cumulative   ``name_bucket{le}`` (cumulative, ``+Inf`` = count),
                                           ``name_sum``, ``name_count`` (counters)
Histogram, delta temporality               refused, as delta sums
Exponential histogram                      refused: the exporter is told to use explicit buckets
Summary                                    ``name{quantile}`` (gauges), ``name_sum``,
                                           ``name_count`` (counters)
=========================================  =============================================

Names: characters outside ``[a-zA-Z0-9_:]`` become ``_``, runs of ``_`` one ``_``,
a leading digit gets a ``_`` before it; the unit becomes a suffix (``s`` ->
``_seconds``, ``By`` -> ``_bytes``, ``By/s`` -> ``_bytes_per_second``, ``{request}``
-> nothing) unless the name already holds it, and comes before ``_total``.
Labels: data point attributes, their names made ``[a-zA-Z_][a-zA-Z0-9_]*`` the same
way (a leading digit gets ``key_``; two attributes that land on one name have their
values joined by ``;`` in the order of their original keys), non-string values as
text (JSON for lists and maps); plus ``job`` (``service.namespace/service.name``),
``instance`` (``service.instance.id``), ``otel_scope_name`` and
``otel_scope_version``. A label with an empty value is no label, as in Prometheus.
The other resource attributes go to one ``target_info`` series per resource (a
gauge of 1 with ``job`` and ``instance``), at the newest time of the resource's
points. Metric descriptions, types and units become metric metadata
(:mod:`pgpulse.store.metadata`). A data point flagged "no recorded value" becomes a
staleness marker of each series it would have written.

A data point is refused on its own (counted in ``rejected``, said in
``problems``) when it breaks a rule: a value that is not finite, a time outside the
accepted window, a histogram whose bucket counts do not add up, a name or labels
that break the store's rules (:mod:`pgpulse.store.series`). A refused metric (delta,
exponential) refuses all its points. The rest of the request is kept: OTLP's
partial success.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import math
import re
from collections.abc import Iterable
from decimal import Decimal

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from pgpulse.store.batch import PG_EPOCH_US, Batch, SeriesKey, Window, cache_key
from pgpulse.store.series import SeriesLimits, labels_problem, metric_name_problem

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = (PROTOBUF, JSON)

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
MAX_PROBLEMS = 5  # distinct messages kept for the answer; the count covers all

# Resource attributes that become job and instance rather than target_info labels.
SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"
SERVICE_INSTANCE = "service.instance.id"
_IDENTITY = frozenset({SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE})

DELTA_HINT = (
    "delta aggregation temporality is not stored: configure the exporter for cumulative "
    "temporality (SDK: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative; "
    "Collector: the deltatocumulative processor)"
)
EXPONENTIAL_HINT = (
    "exponential histograms are not stored: configure the exporter for explicit bucket "
    "histograms (SDK: OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION="
    "explicit_bucket_histogram)"
)

# UCUM units of OpenTelemetry to Prometheus's words (the table the OpenTelemetry
# Collector's and Prometheus's own OTLP translation use).
UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tebibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "%": "percent", "1": "",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month",
             "y": "year"}

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_NOT_ALNUM = re.compile(r"[^a-zA-Z0-9]+")
_UNDERSCORES = re.compile(r"__+")
_BRACES = re.compile(r"\{[^}]*\}")


class DecodeError(ValueError):
    """A body that is not an ExportMetricsServiceRequest in the encoding it claims."""


def decode(body: bytes, encoding: str) -> ExportMetricsServiceRequest:
    """The request a body carries (``encoding``: :data:`PROTOBUF` or :data:`JSON`,
    OTLP's JSON being the protobuf JSON mapping; unknown fields are ignored, as the
    OTLP specification asks). Raises :class:`DecodeError`."""
    message = ExportMetricsServiceRequest()
    try:
        if encoding == PROTOBUF:
            message.ParseFromString(body)
        else:
            doc = orjson.loads(body)
            if type(doc) is not dict:
                raise DecodeError("body is not an OTLP JSON ExportMetricsServiceRequest: "
                                  "expected a JSON object")
            _objects_where_messages_go(doc, message.DESCRIPTOR, "")
            json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"body is not a protobuf ExportMetricsServiceRequest: {exc}") from None
    except json_format.ParseError as exc:
        raise DecodeError(f"body is not an OTLP JSON ExportMetricsServiceRequest: {exc}") from None
    except RecursionError:
        raise DecodeError("body nests deeper than an ExportMetricsServiceRequest can") from None
    return message


def _objects_where_messages_go(doc: dict, descriptor, path: str) -> None:
    """Raise DecodeError where the JSON has something other than an object in place of
    a message: the protobuf JSON parser, told to ignore unknown fields, would read a
    string there as an object of unknown one-letter fields and accept it."""
    fields = descriptor.fields_by_camelcase_name
    for key, value in doc.items():
        field = fields.get(key) or descriptor.fields_by_name.get(key)
        if field is None or field.message_type is None or value is None:
            continue
        where = f"{path}.{key}" if path else key
        for i, item in enumerate(value if field.is_repeated and type(value) is list else (value,)):
            at = f"{where}[{i}]" if field.is_repeated else where
            if type(item) is not dict:
                raise DecodeError(f"body is not an OTLP JSON ExportMetricsServiceRequest: {at} "
                                  f"must be a JSON object")
            _objects_where_messages_go(item, field.message_type, at)


def encode(message: ExportMetricsServiceResponse, encoding: str) -> bytes:
    """A response message in the request's encoding."""
    if encoding == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


# -- names, units and labels ---------------------------------------------------------


def _tokens_hold(name: str, words: str) -> bool:
    """Whether ``words`` (``a`` or ``a_b``) stands in ``name`` as whole ``_`` tokens."""
    return f"_{words}_" in f"_{name}_"


def _unit_words(unit: str) -> tuple[str, str]:
    """(main unit, "per" unit) as Prometheus words: ``By/s`` -> (``bytes``, ``second``);
    parts in braces (``{packet}``) are dropped, ``1`` is no word."""
    main, slash, per = unit.partition("/")
    main = _BRACES.sub("", main).strip()
    per = _BRACES.sub("", per).strip() if slash else ""
    main_words = _NOT_ALNUM.sub("_", UNITS.get(main, main)).strip("_") if main else ""
    per_words = _NOT_ALNUM.sub("_", PER_UNITS.get(per, per)).strip("_") if per else ""
    return main_words, per_words


def prometheus_unit(unit: str) -> str:
    """The unit as Prometheus words: ``ms`` -> ``milliseconds``, ``By/s`` ->
    ``bytes_per_second``, ``{packet}`` -> ``""``; ``1`` -> ``""`` (gauges say
    ``ratio``, :func:`metric_name`)."""
    main, per = _unit_words(unit)
    return "_".join(w for w in (main, "per" if per else "", per) if w)


@functools.lru_cache(maxsize=4096)
def metric_name(name: str, unit: str, kind: str) -> tuple[str, str]:
    """(Prometheus name, Prometheus unit) of an OTLP metric; ``kind``: ``gauge``,
    ``counter`` (a monotonic sum), ``updown`` (a non-monotonic sum), ``histogram`` or
    ``summary``. Histogram and summary names are the family's, before ``_bucket``,
    ``_sum``, ``_count``."""
    base = _UNDERSCORES.sub("_", _INVALID_NAME.sub("_", name))
    if kind == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]  # the unit suffix comes before _total
    main, per = _unit_words(unit)
    if kind == "gauge" and unit.strip() == "1":
        main = "ratio"
    if main and not _tokens_hold(base, main):
        base = f"{base}_{main}"
    if per and not _tokens_hold(base, per):
        base = f"{base}_per_{per}"
    if kind == "counter":
        base = f"{base}_total"
    base = _UNDERSCORES.sub("_", base)
    if base[:1].isdigit():
        base = "_" + base
    return base, "_".join(w for w in (main, "per" if per else "", per) if w)


@functools.lru_cache(maxsize=4096)
def label_name(key: str) -> str:
    """An attribute key as a label name: invalid characters to ``_``, runs of ``_`` one
    ``_``, ``key_`` before a leading digit ("" for an empty key)."""
    name = _UNDERSCORES.sub("_", _INVALID_LABEL.sub("_", key))
    if name[:1].isdigit():
        name = "key_" + name
    return name


def _float_text(v: float) -> str:
    """A double as the attribute specification and Prometheus's ``le`` write it: the
    shortest text that reads back the same, without an exponent (``1``, ``0.005``)."""
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    text = format(Decimal(repr(v)).normalize(), "f")
    return "0" if text == "-0" else text


def _plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        v = value.double_value
        return v if math.isfinite(v) else _float_text(v)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return None


def attribute_text(value: AnyValue) -> str:
    """An attribute value as label text: strings as they are, booleans ``true`` /
    ``false``, numbers in decimal, bytes in base64, lists and maps as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _float_text(value.double_value)
    if kind in ("array_value", "kvlist_value"):
        return orjson.dumps(_plain(value)).decode()
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return ""


def attribute_labels(attributes: Iterable) -> dict[str, str]:
    """Labels of OTLP attributes (KeyValue messages). Empty values are left out; keys
    that become one label name have their values joined by ``;`` in key order."""
    labels: dict[str, str] = {}
    for kv in attributes:
        name = label_name(kv.key)
        text = attribute_text(kv.value)
        if not name or not text:
            continue
        if name in labels:
            break
        labels[name] = text
    else:
        return labels
    groups: dict[str, list[tuple[str, str]]] = {}
    for kv in attributes:
        name = label_name(kv.key)
        text = attribute_text(kv.value)
        if name and text:
            groups.setdefault(name, []).append((kv.key, text))
    return {name: ";".join(text for _, text in sorted(pairs)) for name, pairs in groups.items()}


def resource_labels(attributes: Iterable) -> tuple[dict[str, str], dict[str, str]]:
    """(``job``/``instance`` labels, ``target_info`` labels) of a resource's attributes."""
    by_key = {kv.key: attribute_text(kv.value) for kv in attributes}
    identity: dict[str, str] = {}
    name = by_key.get(SERVICE_NAME, "")
    if name:
        namespace = by_key.get(SERVICE_NAMESPACE, "")
        identity["job"] = f"{namespace}/{name}" if namespace else name
    if by_key.get(SERVICE_INSTANCE):
        identity["instance"] = by_key[SERVICE_INSTANCE]
    info = attribute_labels(kv for kv in attributes if kv.key not in _IDENTITY)
    return identity, info


# -- the translation -----------------------------------------------------------------


@dataclasses.dataclass
class Translation:
    """A request as a batch, with what was refused.

    ``points``: OTLP data points in the request; ``rejected``: those refused;
    ``problems``: the first distinct reasons. ``row_metric`` / ``stale_metric``: the
    metric (its number in the request) each batch row / marker came from, so that a
    metric the store refuses (:meth:`drop_metric`) can leave the batch while the
    rest is written.
    """

    batch: Batch = dataclasses.field(default_factory=Batch)
    points: int = 0
    rejected: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    row_metric: list[int] = dataclasses.field(default_factory=list)
    stale_metric: list[int] = dataclasses.field(default_factory=list)
    metric_points: list[int] = dataclasses.field(default_factory=list)
    metric_names: list[str] = dataclasses.field(default_factory=list)
    metric_family: list[tuple[str, tuple[str, str, str]] | None] = dataclasses.field(
        default_factory=list)
    dropped: set[int] = dataclasses.field(default_factory=set)

    def problem(self, message: str) -> None:
        if message not in self.problems and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def error_message(self) -> str:
        """The problems as one sentence for ``partial_success.error_message``."""
        more = " (and more)" if len(self.problems) >= MAX_PROBLEMS else ""
        return (f"{self.rejected} of {self.points} data points rejected: "
                + "; ".join(self.problems) + more)

    def metric_of_row(self, row: int) -> int:
        return self.row_metric[row]

    def metrics_of_series_name(self, name: str) -> set[int]:
        """The metrics whose rows or markers write series called ``name``."""
        keys = {k for k, key in enumerate(self.batch.keys) if key.name == name}
        found = {m for (_, k, _), m in zip(self.batch.rows, self.row_metric, strict=True) if k in keys}
        found.update(m for (_, k), m in zip(self.batch.stale, self.stale_metric, strict=True)
                     if k in keys)
        return found

    def drop_metric(self, metric: int, why: str) -> None:
        """Take a metric's rows, markers and metadata out of the batch (its points count
        as rejected), leaving out series no one else writes."""
        if metric in self.dropped:
            return
        self.dropped.add(metric)
        self.rejected += self.metric_points[metric]
        self.problem(f"metric {self.metric_names[metric]!r}: {why}")
        old = self.batch
        new = Batch()
        remap: dict[int, int] = {}

        def key_index(k: int) -> int:
            j = remap.get(k)
            if j is None:
                key = old.keys[k]
                j = remap[k] = len(new.keys)
                new.keys.append(key)
                new.index[cache_key(key.name, key.labels)] = j
            return j

        rows: list[tuple[int, int, float]] = []
        row_metric: list[int] = []
        for (t, k, v), m in zip(old.rows, self.row_metric, strict=True):
            if m != metric:
                rows.append((t, key_index(k), v))
                row_metric.append(m)
        stale: list[tuple[int, int]] = []
        stale_metric: list[int] = []
        for (t, k), m in zip(old.stale, self.stale_metric, strict=True):
            if m != metric:
                stale.append((t, key_index(k)))
                stale_metric.append(m)
        new.rows, new.stale = rows, stale
        for m, family in enumerate(self.metric_family):
            if family is not None and m not in self.dropped:
                new.metadata[family[0]] = family[1]
        self.batch = new
        self.row_metric, self.stale_metric = row_metric, stale_metric


class _Rejected(Exception):
    """One data point (or a whole metric) refused, and why."""


class _Builder:
    """Fills a :class:`Translation`, checking each new series once."""

    def __init__(self, limits: SeriesLimits, window: Window) -> None:
        self.limits = limits
        self.window = window
        self.out = Translation()
        self.metric = -1  # the metric being read (its number in the request)
        self.bad_names: dict[str, str | None] = {}
        self.bad_labels: dict[tuple, tuple[str, str, str] | None] = {}

    # -- series and samples

    def series(self, name: str, labels: dict[str, str], typ: str) -> int:
        batch = self.out.batch
        key = cache_key(name, labels)
        k = batch.index.get(key)
        if k is not None:
            declared = batch.keys[k].type
            if declared != typ:
                raise _Rejected(f"series {name} is a {declared} elsewhere in this request, "
                                f"here a {typ}")
            return k
        problem = self.bad_names.get(name, "")
        if problem == "":
            problem = self.bad_names[name] = metric_name_problem(name)
        if problem is not None:
            raise _Rejected(problem)
        bad = self.bad_labels.get(key[1], ())
        if bad == ():
            bad = self.bad_labels[key[1]] = labels_problem(labels, self.limits)
        if bad is not None:
            raise _Rejected(bad[1])
        k = batch.index[key] = len(batch.keys)
        batch.keys.append(SeriesKey(name, labels, typ))
        return k

    def time(self, point) -> int:
        ns = point.time_unix_nano
        if not ns:
            raise _Rejected("a data point without time_unix_nano")
        t = ns // 1000 - PG_EPOCH_US
        w = self.window
        if not w.lo_us <= t <= w.hi_us:
            raise _Rejected(f"time outside the accepted window (now - {w.max_past_s}s .. "
                            f"now + {w.max_future_s}s)")
        return t

    def emit(self, samples: list[tuple[int, float]], t: int, stale: bool) -> None:
        """Add a point's samples (series index, value) at ``t``, or its markers."""
        out = self.out
        if stale:
            out.batch.stale.extend((t, k) for k, _ in samples)
            out.stale_metric.extend([self.metric] * len(samples))
        else:
            out.batch.rows.extend((t, k, v) for k, v in samples)
            out.row_metric.extend([self.metric] * len(samples))

    # -- metrics

    def resource(self, rm) -> None:
        identity, info = resource_labels(rm.resource.attributes)
        newest = None
        for sm in rm.scope_metrics:
            scope = dict(identity)
            if sm.scope.name:
                scope["otel_scope_name"] = sm.scope.name
            if sm.scope.version:
                scope["otel_scope_version"] = sm.scope.version
            for metric in sm.metrics:
                t = self.read_metric(metric, scope)
                if t is not None and (newest is None or t > newest):
                    newest = t
        if info and newest is not None:
            self.target_info(identity, info, newest)

    def target_info(self, identity: dict[str, str], info: dict[str, str], t: int) -> None:
        self.begin("target_info", 0, ("target_info", ("gauge", "Target metadata", "")))
        try:
            k = self.series("target_info", {**info, **identity}, "gauge")
        except _Rejected as exc:
            self.out.problem(f"resource attributes not kept as target_info: {exc}")
            return
        self.emit([(k, 1.0)], t, False)

    def begin(self, name: str, points: int, family: tuple[str, tuple[str, str, str]] | None) -> None:
        out = self.out
        self.metric = len(out.metric_points)
        out.metric_points.append(points)
        out.metric_names.append(name)
        out.metric_family.append(family)
        out.points += points

    def reject_metric(self, why: str) -> None:
        out = self.out
        out.rejected += out.metric_points[self.metric]
        out.problem(f"metric {out.metric_names[self.metric]!r}: {why}")
        out.metric_family[self.metric] = None

    def read_metric(self, metric, scope: dict[str, str]) -> int | None:
        """Map one metric; returns the newest time of its accepted points."""
        kind = metric.WhichOneof("data")
        data = getattr(metric, kind) if kind else None
        points = data.data_points if data is not None else ()
        prom_type = _prometheus_type(metric)
        if kind == "gauge":
            shape = "gauge"
        elif kind == "sum":
            shape = "counter" if data.is_monotonic else "updown"
        else:
            shape = kind or "gauge"
        name, unit = metric_name(metric.name, metric.unit, shape)
        family_type = {"gauge": "unknown" if prom_type == "unknown" else "gauge",
                       "counter": "counter",
                       "updown": prom_type if prom_type in ("info", "stateset") else "gauge",
                       "histogram": "histogram", "summary": "summary"}.get(shape, "gauge")
        self.begin(metric.name, len(points), (name, (family_type, metric.description, unit)))
        if kind is None:
            self.reject_metric("no data (not a gauge, sum, histogram or summary)")
            return None
        if kind == "exponential_histogram":
            self.reject_metric(EXPONENTIAL_HINT)
            return None
        if kind in ("sum", "histogram") and data.aggregation_temporality != CUMULATIVE:
            self.reject_metric(DELTA_HINT if data.aggregation_temporality == DELTA
                               else "aggregation temporality unspecified")
            return None
        typ = "counter" if shape == "counter" else "gauge"
        out = self.out
        if kind in ("gauge", "sum"):
            newest = self.numbers(points, metric.name, name, typ, scope)
        else:
            read = self.histogram if kind == "histogram" else self.summary
            newest = None
            for point in points:
                try:
                    t = read(point, name, typ, scope)
                except _Rejected as exc:
                    out.rejected += 1
                    out.problem(f"metric {metric.name!r}: {exc}")
                    continue
                if newest is None or t > newest:
                    newest = t
        if newest is None:
            out.metric_family[self.metric] = None  # nothing kept: no word on the family
        return newest

    def labels(self, point, scope: dict[str, str]) -> dict[str, str]:
        labels = attribute_labels(point.attributes) if point.attributes else {}
        labels.update(scope)
        return labels

    def numbers(self, points, otlp_name: str, name: str, typ: str, scope: dict[str, str]
                ) -> int | None:
        """Map the points of a gauge or sum; returns the newest time kept.

        The hot path of the protocol: a point whose attributes were seen before in this
        metric, all of them non-empty strings (a non-empty ``string_value`` is only
        read from a string attribute), with a finite value, no flags and a time in the
        window, takes its series from a memo of the raw attributes and skips label
        mapping and checks; every other point goes through :meth:`number`.
        """
        out = self.out
        rows, row_metric, metric = out.batch.rows, out.row_metric, self.metric
        lo, hi = self.window.lo_us, self.window.hi_us
        memo: dict[tuple, int] = {}
        newest: int | None = None
        for point in points:
            raw = tuple([(kv.key, kv.value.string_value) for kv in point.attributes])
            k = memo.get(raw)
            if k is not None and not point.flags:
                ns = point.time_unix_nano
                t = ns // 1000 - PG_EPOCH_US
                which = point.WhichOneof("value")
                if which == "as_double":
                    value = point.as_double
                    good = value - value == 0.0  # finite (NaN and infinities are not)
                else:
                    good = which == "as_int"
                    value = float(point.as_int)
                if good and ns and lo <= t <= hi:
                    rows.append((t, k, value))
                    row_metric.append(metric)
                    if newest is None or t > newest:
                        newest = t
                    continue
            try:
                t, k = self.number(point, name, typ, scope)
            except _Rejected as exc:
                out.rejected += 1
                out.problem(f"metric {otlp_name!r}: {exc}")
                continue
            if all(v for _, v in raw) and all(
                    kv.value.WhichOneof("value") == "string_value" for kv in point.attributes):
                memo[raw] = k
            if newest is None or t > newest:
                newest = t
        return newest

    def number(self, point, name: str, typ: str, scope: dict[str, str]) -> tuple[int, int]:
        """(time, series index) of one gauge or sum point, its sample or marker added."""
        t = self.time(point)
        stale = bool(point.flags & NO_RECORDED_VALUE)
        which = point.WhichOneof("value")
        if which == "as_double":
            value = point.as_double
            if not stale and not math.isfinite(value):
                raise _Rejected(f"value {_float_text(value)} is not a finite number")
        elif which == "as_int":
            value = float(point.as_int)
        elif stale:
            value = 0.0
        else:
            raise _Rejected("a number data point without a value")
        k = self.series(name, self.labels(point, scope), typ)
        self.emit([(k, value)], t, stale)
        return t, k

    def histogram(self, point, name: str, typ: str, scope: dict[str, str]) -> int:
        t = self.time(point)
        stale = bool(point.flags & NO_RECORDED_VALUE)
        bounds = point.explicit_bounds
        counts = point.bucket_counts
        count = point.count
        if counts and len(counts) != len(bounds) + 1:
            raise _Rejected(f"{len(counts)} bucket counts for {len(bounds)} explicit bounds "
                            f"(there must be one more count than bounds)")
        if any(not math.isfinite(b) for b in bounds) or any(
                b >= c for b, c in zip(bounds, bounds[1:], strict=False)):
            raise _Rejected("explicit bounds must be finite and increasing")
        if counts and not stale and sum(counts) != count:
            raise _Rejected(f"bucket counts add up to {sum(counts)}, the count is {count}")
        has_sum = point.HasField("sum")
        if has_sum and not stale and not math.isfinite(point.sum):
            raise _Rejected(f"sum {_float_text(point.sum)} is not a finite number")
        labels = self.labels(point, scope)
        samples: list[tuple[int, float]] = []
        if counts or stale:
            running = 0
            for i, bound in enumerate(bounds):
                running += counts[i] if counts else 0
                k = self.series(name + "_bucket", {**labels, "le": _float_text(bound)}, "counter")
                samples.append((k, float(running)))
        k = self.series(name + "_bucket", {**labels, "le": "+Inf"}, "counter")
        samples.append((k, float(count)))
        samples.append((self.series(name + "_count", labels, "counter"), float(count)))
        # The sum is a counter only while no value is negative (the specification
        # reports it "only if the sum is positive and monotonic").
        if has_sum and point.sum >= 0 and not (point.HasField("min") and point.min < 0):
            samples.append((self.series(name + "_sum", labels, "counter"), point.sum))
        self.emit(samples, t, stale)
        return t

    def summary(self, point, name: str, typ: str, scope: dict[str, str]) -> int:
        t = self.time(point)
        stale = bool(point.flags & NO_RECORDED_VALUE)
        if not stale and not math.isfinite(point.sum):
            raise _Rejected(f"sum {_float_text(point.sum)} is not a finite number")
        labels = self.labels(point, scope)
        samples: list[tuple[int, float]] = []
        for q in sorted(point.quantile_values, key=lambda q: q.quantile):
            if not 0.0 <= q.quantile <= 1.0:
                raise _Rejected(f"quantile {_float_text(q.quantile)} is not between 0 and 1")
            # A quantile over no observations is NaN: there is no value to keep.
            if stale or math.isfinite(q.value):
                k = self.series(name, {**labels, "quantile": _float_text(q.quantile)}, "gauge")
                samples.append((k, q.value))
        samples.append((self.series(name + "_count", labels, "counter"), float(point.count)))
        if point.sum >= 0:
            samples.append((self.series(name + "_sum", labels, "counter"), point.sum))
        self.emit(samples, t, stale)
        return t


def _prometheus_type(metric) -> str:
    for kv in metric.metadata:
        if kv.key == "prometheus.type":
            return kv.value.string_value
    return ""


def sample_count(request: ExportMetricsServiceRequest) -> int:
    """The most samples (and markers) a request can make, counted before mapping it,
    so that a request past a limit costs no more than its decoding: a number point
    makes one, a histogram point one per bucket plus ``_count`` and ``_sum``, a
    summary point one per quantile plus ``_count`` and ``_sum``; ``target_info`` one
    per resource."""
    total = 0
    for rm in request.resource_metrics:
        total += 1
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind in ("gauge", "sum"):
                    total += len(getattr(metric, kind).data_points)
                elif kind == "histogram":
                    total += sum(len(p.explicit_bounds) + 3 for p in metric.histogram.data_points)
                elif kind == "summary":
                    total += sum(len(p.quantile_values) + 2 for p in metric.summary.data_points)
    return total


def translate(request: ExportMetricsServiceRequest, limits: SeriesLimits, window: Window
              ) -> Translation:
    """The batch of a request, and what of it was refused (never raises for bad data)."""
    builder = _Builder(limits, window)
    for rm in request.resource_metrics:
        builder.resource(rm)
    out = builder.out
    for family in out.metric_family:
        if family is not None:
            out.batch.metadata[family[0]] = family[1]
    return out
