"""Validation of ingest batches: the rules as one table, and a fast path beside it.

:data:`SAMPLE_RULES` is the specification (docs/api.md lists it for users): each
sample runs through the rules in order, and the first that fails is the sample's
problem (its field, message and reason). The rules of a series' identity (names,
labels, type) are the store's (:mod:`pgpulse.store.series`), written there once;
this table adds what is particular to a JSON batch (fields, values, timestamps,
duplicates). :func:`validate_plain` runs the table and nothing else.

:func:`validate` gives the same answer, faster: a sample of a series already
accepted in this batch (same name, same labels in the same order, same declared
type) with a finite float value needs only its timestamp converted and checked for
window and duplicates, a few dict lookups; anything else runs the table. The fast
path converts Unix seconds inline (a function call per sample costs a tenth of
its time) with :func:`time_us`'s own bounds and formula. A property test
(tests/test_store_validation.py) checks that both agree on random batches.

The pass checks every sample (so the error can count them all), remembers names
and label sets already found good, and raises :class:`InvalidSample` naming the
first bad sample: ``metrics[i].field: message`` with ``index``, ``field``,
``reason``, ``invalid_count`` and ``total``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any

import msgspec

from pgpulse.store.batch import PG_EPOCH_US, Batch, LabelKey, SeriesKey, parse_rfc3339
from pgpulse.store.batch import datetime_us as _datetime_us
from pgpulse.store.errors import InvalidSample
from pgpulse.store.series import (
    LABEL_NAME,  # noqa: F401 - the label name rule, for the API's matchers
    SeriesLimits,
    label_set_problem,
    metric_name_problem,
    type_problem,
)

FIELDS = frozenset({"name", "labels", "value", "timestamp", "type"})
MAX_UNIX_S = 1e11  # Unix seconds beyond this are not a time (the year 5138)
MAX_VALUE = 1.7e308  # integers beyond this do not fit a float8


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a batch is checked against: the series limits and the time window."""

    series: SeriesLimits
    max_past_s: int
    max_future_s: int


def time_us(ts: Any) -> int | None:
    """PostgreSQL microseconds of a sample timestamp (number or RFC 3339), or None."""
    kind = type(ts)
    if kind is float or kind is int:
        if not -MAX_UNIX_S <= ts <= MAX_UNIX_S:  # also false for NaN
            return None
        return round(ts * 1_000_000) - PG_EPOCH_US  # pgpulse.store.batch.unix_us, inlined
    if kind is str:
        parsed = parse_rfc3339(ts)
        return None if parsed is None else _datetime_us(parsed)
    return None


class _Check:
    """One batch being checked: its limits, the series and rows accepted so far, and
    what each rule computed for the sample at hand (``name``, ``labels``, ``lkey``,
    ``value``, ``t``, ``k``) for the rules after it."""

    def __init__(self, limits: Limits, now_us: int) -> None:
        self.limits = limits
        self.now_us = now_us
        self.lo = now_us - limits.max_past_s * 1_000_000
        self.hi = now_us + limits.max_future_s * 1_000_000
        self.batch = Batch()
        self.seen: set[tuple[int, int]] = set()
        self.good_names: set[str] = set()
        self.good_labels: set[LabelKey] = set()
        self.good_label_names: set[str] = set()
        # (name, labels items in the sample's order, declared type) -> series index
        self.fast: dict[tuple, int] = {}
        self.first: tuple[int, str, str, str] | None = None
        self.invalid = 0
        # the sample at hand
        self.labels: dict = {}
        self.lkey: LabelKey = ()
        self.value = 0.0
        self.t = 0
        self.k: int | None = None


Problem = str | tuple[str, str] | None  # a message (the rule's field), or (field, message)


@dataclasses.dataclass(frozen=True)
class Rule:
    field: str  # where a failure points ("" the sample itself)
    reason: str  # counted in pgpulse_proxy_samples_rejected_total, returned as "reason"
    says: str  # the rule in words
    check: Callable[[dict, _Check], Problem]


# -- the rules, in the order a sample meets them --------------------------------------


def _is_object(s: Any, c: _Check) -> Problem:
    return None if type(s) is dict else "sample must be a JSON object"


def _known_fields(s: dict, c: _Check) -> Problem:
    if s.keys() <= FIELDS:
        return None
    extra = sorted(set(s) - FIELDS)[0]
    return extra, f"unknown field {extra!r}"


def _name(s: dict, c: _Check) -> Problem:
    name = s.get("name")
    if type(name) is str and name in c.good_names:
        return None
    problem = metric_name_problem(name)
    if problem is None:
        c.good_names.add(name)
    return problem


def _labels_object(s: dict, c: _Check) -> Problem:
    labels = s.get("labels")
    c.labels, c.lkey = {}, ()
    if labels is None or labels == {}:
        return None
    if type(labels) is not dict:
        return "labels must be a JSON object of strings"
    c.labels, c.lkey = labels, tuple(sorted(labels.items()))
    return None


def _known_labels(c: _Check) -> bool:
    try:
        return c.lkey in c.good_labels
    except TypeError:  # an unhashable value (list, object)
        return False


def _label_count(s: dict, c: _Check) -> Problem:
    if len(c.labels) > c.limits.series.max_labels and not _known_labels(c):
        return f"more than {c.limits.series.max_labels} labels"
    return None


def _each_label(s: dict, c: _Check) -> Problem:
    if not c.lkey or _known_labels(c):
        return None
    bad = label_set_problem(c.labels, c.limits.series.max_label_value_len, c.good_label_names)
    if bad is None:
        c.good_labels.add(c.lkey)
    return bad


def _value(s: dict, c: _Check) -> Problem:
    value = s.get("value")
    kind = type(value)
    if kind is int:
        if abs(value) > MAX_VALUE:
            return "value out of range"
        value = float(value)
    elif kind is not float or not math.isfinite(value):
        return "value must be a finite number"
    c.value = value
    return None


def _timestamp(s: dict, c: _Check) -> Problem:
    ts = s.get("timestamp")
    t = c.now_us if ts is None else time_us(ts)
    if t is None:
        return "timestamp must be RFC 3339 text or Unix seconds"
    c.t = t
    return None


def _window(s: dict, c: _Check) -> Problem:
    if c.lo <= c.t <= c.hi:
        return None
    return (f"timestamp outside the accepted window (now - {c.limits.max_past_s}s .. "
            f"now + {c.limits.max_future_s}s)")


def _type(s: dict, c: _Check) -> Problem:
    return type_problem(s.get("type"))


def _one_type(s: dict, c: _Check) -> Problem:
    c.k = k = c.batch.index.get((s["name"], c.lkey))
    typ = s.get("type")
    if k is None or typ is None:
        return None
    declared = c.batch.keys[k].type
    if declared is not None and declared != typ:
        return f"series declared both {declared} and {typ} in this batch"
    return None


def _no_duplicate(s: dict, c: _Check) -> Problem:
    if c.k is not None and (c.k, c.t) in c.seen:
        return "duplicate sample: same series and timestamp as an earlier sample of this batch"
    return None


SAMPLE_RULES: tuple[Rule, ...] = (
    Rule("", "invalid", "a sample is a JSON object", _is_object),
    Rule("", "invalid", "fields are only name, labels, value, timestamp, type", _known_fields),
    Rule("name", "invalid_name", "a metric name (pgpulse.store.series)", _name),
    Rule("labels", "invalid_labels", "labels, when given, are a JSON object", _labels_object),
    Rule("labels", "too_many_labels", "at most PROXY_MAX_LABELS labels", _label_count),
    Rule("labels", "invalid_labels",
         "label names and values (pgpulse.store.series; PROXY_MAX_LABEL_VALUE_LENGTH)",
         _each_label),
    Rule("value", "invalid_value", "a value is a finite JSON number", _value),
    Rule("timestamp", "invalid_timestamp",
         "a timestamp is RFC 3339 text or Unix seconds (absent: the time the batch came)",
         _timestamp),
    Rule("timestamp", "out_of_window",
         "within now - PROXY_MAX_SAMPLE_AGE_SECONDS .. now + PROXY_MAX_SAMPLE_FUTURE_SECONDS",
         _window),
    Rule("type", "invalid", "a type is gauge or counter (absent: the series' type)", _type),
    Rule("type", "type_conflict", "one series has one type in a batch", _one_type),
    Rule("timestamp", "duplicate", "no two samples of a batch share series and timestamp",
         _no_duplicate),
)


_RUN = tuple((rule.check, rule) for rule in SAMPLE_RULES)


def _sample(c: _Check, i: int, s: Any) -> None:
    """Run the table on sample ``i``: accept it into the batch, or count its problem."""
    for check, rule in _RUN:
        problem = check(s, c)
        if problem is not None:
            field, message = (rule.field, problem) if type(problem) is str else problem
            c.invalid += 1
            if c.first is None:
                c.first = (i, field, message, rule.reason)
            return
    typ = s.get("type")
    k = c.k
    batch = c.batch
    if k is None:
        k = batch.index[(s["name"], c.lkey)] = len(batch.keys)
        batch.keys.append(SeriesKey(s["name"], c.labels, typ))
    elif typ is not None and batch.keys[k].type is None:
        batch.keys[k].type = typ
    c.seen.add((k, c.t))
    batch.rows.append((c.t, k, c.value))
    labels = s.get("labels")
    # The fast path's key: the labels in the sample's own order (no sort needed).
    c.fast[(s["name"], tuple(labels.items()) if labels else (), typ)] = k


def _result(c: _Check, total: int) -> Batch:
    if c.first is not None:
        i, field, message, reason = c.first
        where = f"metrics[{i}]" + (f".{field}" if field else "")
        raise InvalidSample(f"{where}: {message}", index=i, field=field or None, reason=reason,
                            invalid_count=c.invalid, total=total)
    return c.batch


def validate_plain(items: list, limits: Limits, now_us: int) -> Batch:
    """The specification: every sample through :data:`SAMPLE_RULES`."""
    c = _Check(limits, now_us)
    for i, s in enumerate(items):
        _sample(c, i, s)
    return _result(c, len(items))


def validate(items: list, limits: Limits, now_us: int) -> Batch:
    """Check a batch (the value of "metrics"); raise InvalidSample naming the first bad
    sample. Same answer as :func:`validate_plain`, with the fast path."""
    c = _Check(limits, now_us)
    fast, seen, rows = c.fast, c.seen, c.batch.rows
    lo, hi = c.lo, c.hi
    for i, s in enumerate(items):
        if type(s) is dict and s.keys() <= FIELDS:
            labels = s.get("labels")
            try:
                k = fast.get((s.get("name"), tuple(labels.items()) if labels else (), s.get("type")))
            except (TypeError, AttributeError):  # unhashable values, labels not an object
                k = None
            value = s.get("value")
            # value - value is 0.0 only for a finite float.
            if k is not None and type(value) is float and value - value == 0.0:
                ts = s.get("timestamp")
                kind = type(ts)
                if ts is None:
                    t = now_us
                elif (kind is float or kind is int) and -MAX_UNIX_S <= ts <= MAX_UNIX_S:
                    t = round(ts * 1_000_000) - PG_EPOCH_US  # time_us(ts), inlined
                else:
                    t = time_us(ts)
                if t is not None and lo <= t <= hi:
                    mark = (k, t)
                    if mark not in seen:
                        seen.add(mark)
                        rows.append((t, k, value))
                        continue
        _sample(c, i, s)
    return _result(c, len(items))


# -- the typed path: straight from the body's bytes to a column-shaped batch ---------


class _Sample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One sample as the decoder types it. Not tracked by the cyclic collector
    (``gc=False``): a batch of 5,000 adds no work for it. The labels stay raw JSON
    text, the per-batch key of a label set spelled the same way; each distinct text
    is decoded and checked once."""

    name: str
    value: float
    labels: msgspec.Raw = msgspec.Raw(b"")
    timestamp: float | str | None = None
    type: str | None = None


class _Body(msgspec.Struct, gc=False):
    metrics: list[_Sample]


_DECODE_BODY = msgspec.json.Decoder(_Body).decode
_DECODE_LABELS = msgspec.json.Decoder(dict[str, str] | None).decode
_NAME, _LABELS, _TYPE = attrgetter("name"), attrgetter("labels"), attrgetter("type")
_VALUE, _TIMESTAMP = attrgetter("value"), attrgetter("timestamp")
_MICRO = partial(operator.mul, 1_000_000)


def _typed_key(batch: Batch, name: str, raw: bytes, typ: str | None, limits: Limits,
               good_names: set[str], good_label_names: set[str]) -> int | None:
    """The batch's index of the series of a sample (adding it when new), or None when
    the sample breaks a rule: the caller then takes the reference path, which says
    which rule."""
    if name not in good_names:
        if metric_name_problem(name) is not None:
            return None
        good_names.add(name)
    if type_problem(typ) is not None:
        return None
    try:
        labels = _DECODE_LABELS(raw) if raw else None
    except msgspec.DecodeError:  # ValidationError is one: a value not a string
        return None
    labels = labels or {}
    if len(labels) > limits.series.max_labels or label_set_problem(
            labels, limits.series.max_label_value_len, good_label_names) is not None:
        return None
    try:
        return batch.series(name, labels, typ)
    except InvalidSample:  # a type conflict: the checked path names it
        return None


def decode_typed(data: bytes, limits: Limits, now_us: int, max_samples: int) -> Batch | None:
    """The batch of an /api/ingest body that keeps every rule, decoded and checked in
    one pass per column; None for any other body (not JSON, a wrong type, a sample
    breaking a rule, too many samples), which :func:`validate` then answers with its
    exact error. So this path never decides what is wrong, only that nothing is.

    Per sample it costs a typed decode (no dict per sample) and column operations
    that loop in C; rules are checked once per distinct (name, label text, type), and
    the value, window and duplicate checks once over the batch's columns.
    """
    try:
        samples = _DECODE_BODY(data).metrics
    except msgspec.DecodeError:
        return None
    n = len(samples)
    if n > max_samples:
        return None
    batch = Batch()
    if not n:
        return batch
    # Columns (map and zip loop in C): the key of each sample, then each distinct key
    # checked once and given its series index.
    keys = list(zip(map(_NAME, samples), map(bytes, map(_LABELS, samples)), map(_TYPE, samples),
                    strict=True))
    index = dict.fromkeys(keys)
    good_names: set[str] = set()
    good_label_names: set[str] = set()
    for fk in index:
        k = _typed_key(batch, fk[0], fk[1], fk[2], limits, good_names, good_label_names)
        if k is None:
            return None
        index[fk] = k
    ks = list(map(index.__getitem__, keys))
    values = list(map(_VALUE, samples))
    # No NaN comes from JSON; an infinity or a float past MAX_VALUE fails here.
    if not (-MAX_VALUE <= min(values) and max(values) <= MAX_VALUE):
        return None
    stamps = list(map(_TIMESTAMP, samples))
    if set(map(type, stamps)) == {float}:
        if not (-MAX_UNIX_S <= min(stamps) and max(stamps) <= MAX_UNIX_S):
            return None
        # time_us(ts), inlined: round(ts * 1_000_000) - PG_EPOCH_US.
        times = [t - PG_EPOCH_US for t in map(round, map(_MICRO, stamps))]
    else:
        times = [now_us if ts is None else time_us(ts) for ts in stamps]
        if None in times:
            return None
    lo = now_us - limits.max_past_s * 1_000_000
    hi = now_us + limits.max_future_s * 1_000_000
    if not (lo <= min(times) and max(times) <= hi):
        return None
    batch.rows = list(zip(times, ks, values, strict=True))
    if len(set(zip(times, ks, strict=True))) != n:  # a duplicate (series, time)
        return None
    return batch
