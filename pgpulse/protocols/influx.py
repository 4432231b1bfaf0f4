"""Influx line protocol: a write request's body decoded into the store's Batch.

Each line is parsed by ``line-protocol-parser`` (a maintained C parser of the
InfluxDB line protocol) and mapped the way Telegraf's Prometheus output maps a
metric:

* measurement and field key make the metric name ``<measurement>_<field>``; for the
  measurement ``prometheus`` (what Telegraf's Prometheus input emits with
  ``metric_version = 2``) the field key alone, so scraped names come back as they
  were. Characters outside ``[a-zA-Z0-9_:]`` become ``_`` and a leading digit gets
  a ``_`` in front, as Telegraf does;
* tags become labels, their keys sanitised the same way (``[a-zA-Z0-9_]``);
* integer, unsigned and float fields become values, booleans 1 and 0;
* a string field refuses its whole line (pgpulse stores numbers only), as does a
  line that does not parse, a name or label the store's rules refuse
  (:mod:`pgpulse.store.series`), or a time outside the accepted window.

A refused line is reported with its line number (1-based, counting every line of
the body) and does not stop the others: the caller writes the good lines and
answers the refusals, as InfluxDB 1.x and InfluxDB 3 do with a partial write.
Lines are split at ``\\n`` (a trailing ``\\r`` is dropped); blank lines and
``#`` comments are skipped. A string field value holding a newline is split with
it, so both halves are refused (string fields are refused anyway).

Times: a line's timestamp counts in the request's precision (``ns`` by default);
a line without one takes the time the request came. pgpulse keeps microseconds,
so nanoseconds are truncated towards the past, and two points of a series within
one microsecond are one sample (the later line wins, as the store's duplicate
rule says).
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import timedelta

from line_protocol_parser import LineFormatError, parse_line

from pgpulse.store.batch import PG_EPOCH, PG_EPOCH_US, Batch
from pgpulse.store.series import SeriesLimits, label_set_problem, metric_name_problem

# Microseconds per unit of each precision, as a (multiply, divide) pair: integer
# arithmetic, so no timestamp is rounded through a float.
PRECISION_US: dict[str, tuple[int, int]] = {
    "ns": (1, 1000), "n": (1, 1000),
    "us": (1, 1), "u": (1, 1),
    "ms": (1000, 1),
    "s": (1_000_000, 1),
    "m": (60_000_000, 1),
    "h": (3_600_000_000, 1),
}
V2_PRECISIONS = ("ns", "us", "ms", "s")  # what /api/v2/write takes
V1_PRECISIONS = ("n", "ns", "u", "us", "ms", "s", "m", "h")  # what /write (InfluxDB 1.x) takes
DEFAULT_PRECISION = "ns"
PROMETHEUS_MEASUREMENT = "prometheus"
MAX_REPORTED = 100  # refused lines listed in an answer (all are counted)

_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_QUOTED = 80  # characters of a refused line quoted in its error


class TooManySamples(Exception):
    """The body holds more samples (fields of accepted lines) than one request may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} samples in one request")
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class Rules:
    """What lines are checked against: the series limits, the accepted time window
    (PostgreSQL microseconds) and the most samples of one request."""

    series: SeriesLimits
    oldest_us: int
    newest_us: int
    max_samples: int


@dataclasses.dataclass(frozen=True)
class LineError:
    line: int  # 1-based, counting every line of the body
    message: str


@dataclasses.dataclass
class Decoded:
    """The batch of the accepted lines, and what was refused."""

    batch: Batch
    points: int = 0  # lines holding a point (not blank, not a comment)
    accepted: int = 0  # of which accepted
    errors: list[LineError] = dataclasses.field(default_factory=list)  # first MAX_REPORTED
    refused: int = 0  # all refused lines

    def refuse(self, line: int, message: str) -> None:
        self.refused += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(LineError(line, message))


def metric_name(measurement: str, field: str) -> str:
    """The metric name of a field, as Telegraf's Prometheus output makes it."""
    name = field if measurement == PROMETHEUS_MEASUREMENT else f"{measurement}_{field}"
    name = _METRIC_INVALID.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def label_name(tag: str) -> str:
    """The label name of a tag key, as Telegraf's Prometheus output makes it."""
    name = _LABEL_INVALID.sub("_", tag)
    return "_" + name if name[:1].isdigit() else name


def time_us(value: int, precision: str) -> int:
    """PostgreSQL microseconds of a line-protocol timestamp in ``precision``."""
    mul, div = PRECISION_US[precision]
    return value * mul // div - PG_EPOCH_US


def _quote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return repr(text if len(text) <= _QUOTED else text[:_QUOTED] + "...")


def _when(t_us: int) -> str:
    try:
        return (PG_EPOCH + timedelta(microseconds=t_us)).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return "beyond the year 9999"


class _Decoder:
    """One body being decoded; caches what was already found good or bad in it."""

    def __init__(self, rules: Rules, precision: str, now_us: int) -> None:
        self.rules = rules
        self.precision = precision
        self.now_us = now_us
        self.out = Decoded(Batch())
        self.names: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.tags: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], str | None]] = {}
        self.label_names: set[str] = set()
        # (metric name, tags as parsed) -> series index of the batch
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}

    def name(self, measurement: str, field: str) -> tuple[str, str | None]:
        key = (measurement, field)
        hit = self.names.get(key)
        if hit is None:
            name = metric_name(measurement, field)
            hit = self.names[key] = (name, metric_name_problem(name))
        return hit

    def labels(self, tags: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], str | None]:
        hit = self.tags.get(tags)
        if hit is None:
            hit = self.tags[tags] = self._labels(tags)
        return hit

    def _labels(self, tags: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], str | None]:
        limits = self.rules.series
        if len(tags) > limits.max_labels:
            return {}, f"{len(tags)} tags; at most {limits.max_labels} are stored (PROXY_MAX_LABELS)"
        labels: dict[str, str] = {}
        keys: dict[str, str] = {}
        for key, value in tags:
            name = label_name(key)
            if name in labels:
                return {}, f"tags {keys[name]!r} and {key!r} both become label {name!r}"
            labels[name] = value
            keys[name] = key
        bad = label_set_problem(labels, limits.max_label_value_len, self.label_names)
        return labels, (None if bad is None else f"tags: {bad[1]}")

    def time(self, stamp: int | None) -> tuple[int, str | None]:
        if stamp is None:
            return self.now_us, None
        t = time_us(stamp, self.precision)
        if self.rules.oldest_us <= t <= self.rules.newest_us:
            return t, None
        return t, (f"timestamp {stamp} (precision {self.precision}) is {_when(t)}, outside the "
                   "accepted window (PROXY_MAX_SAMPLE_AGE_SECONDS before now to "
                   "PROXY_MAX_SAMPLE_FUTURE_SECONDS after); is the precision parameter right?")

    def line(self, number: int, raw: bytes) -> None:
        out = self.out
        try:
            point = parse_line(raw)
        except (LineFormatError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            reason = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
            out.points += 1
            out.refuse(number, f"unable to parse {_quote(raw)}: {reason}")
            return
        if point is None:  # a comment
            return
        out.points += 1
        fields: dict = point["fields"]
        for key, value in fields.items():
            if type(value) is str:
                out.refuse(number, f"field {key!r} of measurement {point['measurement']!r} is a "
                                   "string; pgpulse stores numbers: integer, unsigned, float "
                                   "and boolean fields")
                return
        tags = tuple(point["tags"].items())
        labels, problem = self.labels(tags)
        if problem is None:
            t, problem = self.time(point["time"])
        if problem is not None:
            out.refuse(number, problem)
            return
        measurement = point["measurement"]
        names: list[str] = []
        values: list[float] = []
        for key, value in fields.items():
            name, problem = self.name(measurement, key)
            if problem is None:
                value = float(value)  # int, unsigned and bool (True is 1.0)
                if not math.isfinite(value):  # the parser refuses nan and inf already
                    problem = "value is not a finite number"
            if problem is not None:
                out.refuse(number, f"field {key!r}: {problem}")
                return
            names.append(name)
            values.append(value)
        batch = out.batch
        rows = batch.rows
        if len(rows) + len(names) > self.rules.max_samples:
            raise TooManySamples(self.rules.max_samples)
        for name, value in zip(names, values, strict=True):
            k = self.series.get((name, tags))
            if k is None:
                k = self.series[(name, tags)] = batch.series(name, labels)
            rows.append((t, k, value))
        out.accepted += 1


def decode(body: bytes, precision: str, now_us: int, rules: Rules) -> Decoded:
    """The batch of ``body``'s accepted lines, with its refused lines.

    ``precision`` is a key of :data:`PRECISION_US`; ``now_us`` (PostgreSQL µs) is
    the time of lines without a timestamp. Raises :class:`TooManySamples` past
    ``rules.max_samples``; a line never raises.
    """
    if precision not in PRECISION_US:
        raise ValueError(f"unknown precision {precision!r}")
    decoder = _Decoder(rules, precision, now_us)
    for number, raw in enumerate(body.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.strip():
            decoder.line(number, raw)
    return decoder.out

