"""Validation of ingest batches: one tight pass over the samples.

Rules (docs/api.md lists them for users):

* a metric name matches ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and is at most 200 characters;
* a label name matches ``[a-zA-Z_][a-zA-Z0-9_]*``, at most 100 characters, and does
  not start with ``__`` (reserved, like Prometheus);
* a label value is a string of at most PROXY_MAX_LABEL_VALUE_LENGTH characters,
  without NUL; at most PROXY_MAX_LABELS labels per sample;
* a value is a finite JSON number (not a string, not a boolean);
* a timestamp is RFC 3339 text or Unix seconds, within [now - PROXY_MAX_SAMPLE_AGE_SECONDS,
  now + PROXY_MAX_SAMPLE_FUTURE_SECONDS]; absent, it is the time the batch arrived;
* a type is "gauge" or "counter" (absent: the series' type, gauge for a new series);
* no two samples of a batch share series and timestamp, and one series has one type;
* a sample has no fields besides name, labels, value, timestamp, type.

The pass checks every sample (so the error can count them all) but does the work of
a name or label set once per batch: samples of the same series cost a few dict
lookups each.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy.settings import ProxySettings
from proxy.timeparse import PG_EPOCH_S, parse_rfc3339

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_NAME_LENGTH = 200
MAX_LABEL_NAME_LENGTH = 100
TYPES = ("gauge", "counter")
FIELDS = frozenset({"name", "labels", "value", "timestamp", "type"})
_PG_EPOCH_US = PG_EPOCH_S * 1_000_000
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclasses.dataclass
class SeriesKey:
    name: str
    labels: dict[str, str]
    type: str | None  # as the batch declared it (None: not said)


@dataclasses.dataclass
class Batch:
    """A valid batch: distinct series, and rows of (PostgreSQL µs, series index, value)."""

    keys: list[SeriesKey]
    index: dict[tuple[str, tuple[tuple[str, str], ...]], int]
    rows: list[tuple[int, int, float]]


class InvalidBatch(Exception):
    def __init__(self, index: int, field: str, message: str, invalid: int, reason: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message
        self.invalid = invalid
        self.reason = reason


def label_problem(name: Any, value: Any, max_len: int) -> tuple[str, str] | None:
    """(field suffix, message) for a bad label, or None."""
    if type(name) is not str or len(name) > MAX_LABEL_NAME_LENGTH or not LABEL_NAME.fullmatch(name):
        return "", f"label name {str(name)[:50]!r} must match [a-zA-Z_][a-zA-Z0-9_]* (at most {MAX_LABEL_NAME_LENGTH} characters)"
    if name.startswith("__"):
        return "", f"label name {name!r}: names starting with __ are reserved"
    if type(value) is not str:
        return "." + name, f"label {name!r}: value must be a string"
    if len(value) > max_len:
        return "." + name, f"label {name!r}: value longer than {max_len} characters"
    if "\x00" in value:
        return "." + name, f"label {name!r}: value contains a NUL character"
    return None


def metric_name_problem(name: Any) -> str | None:
    if type(name) is not str:
        return "name must be a string"
    if not name or len(name) > MAX_NAME_LENGTH or not METRIC_NAME.fullmatch(name):
        return f"metric name {name[:50]!r} must match [a-zA-Z_:][a-zA-Z0-9_:]* (1 to {MAX_NAME_LENGTH} characters)"
    return None


def time_us(ts: Any) -> int | None:
    """PostgreSQL microseconds of a sample timestamp (number or RFC 3339), or None."""
    kind = type(ts)
    if kind is int or kind is float:
        if not math.isfinite(ts) or abs(ts) > 1e11:
            return None
        return round(ts * 1_000_000) - _PG_EPOCH_US
    if kind is str:
        parsed = parse_rfc3339(ts)
        if parsed is None:
            return None
        # Integer arithmetic: no float rounding of microseconds.
        return (parsed - _PG_EPOCH) // _US
    return None


def validate(items: Any, settings: ProxySettings, now_us: int) -> Batch:
    """Check a batch (the value of "metrics"); raise InvalidBatch naming the first bad sample."""
    lo = now_us - settings.max_past_s * 1_000_000
    hi = now_us + settings.max_future_s * 1_000_000
    max_labels = settings.max_labels
    max_len = settings.max_label_value_len
    keys: list[SeriesKey] = []
    index: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    rows: list[tuple[int, int, float]] = []
    seen: set[tuple[int, int]] = set()
    good_names: set[str] = set()
    good_labels: set[tuple[tuple[str, str], ...]] = set()
    first: tuple[int, str, str, str] | None = None
    invalid = 0

    # Fast path: a sample of a series already seen in this batch (same name, same
    # labels in the same order, same declared type), with a float value and a numeric
    # or absent timestamp, costs a few dict lookups. Anything else takes the full checks.
    fast: dict[tuple, int] = {}
    for i, s in enumerate(items):
        if type(s) is dict and s.keys() <= FIELDS:
            labels = s.get("labels")
            value = s.get("value")
            ts = s.get("timestamp")
            try:
                fk = (s.get("name"), tuple(labels.items()) if labels else (), s.get("type"))
                k = fast.get(fk)
            except (TypeError, AttributeError):
                k = None
            # value - value is 0.0 only for a finite float.
            if k is not None and type(value) is float and value - value == 0.0:
                kind = type(ts)
                if ts is None:
                    t = now_us
                elif kind is float or kind is int:
                    t = round(ts * 1_000_000) - _PG_EPOCH_US if -1e11 < ts < 1e11 else lo - 1
                else:
                    t = None
                if t is not None and lo <= t <= hi:
                    mark = (k, t)
                    if mark not in seen:
                        seen.add(mark)
                        rows.append((t, k, value))
                        continue
        problem: tuple[str, str, str] | None = None  # (field, message, reason)
        if type(s) is not dict:
            problem = ("", "sample must be a JSON object", "invalid")
        elif not s.keys() <= FIELDS:
            extra = sorted(set(s) - FIELDS)[0]
            problem = (extra, f"unknown field {extra!r}", "invalid")
        else:
            name = s.get("name")
            if type(name) is not str or name not in good_names:
                msg = metric_name_problem(name)
                if msg:
                    problem = ("name", msg, "invalid_name")
                else:
                    good_names.add(name)
            labels = s.get("labels")
            lkey: tuple[tuple[str, str], ...] = ()
            if problem is None and labels is not None and labels != {}:
                if type(labels) is not dict:
                    problem = ("labels", "labels must be a JSON object of strings", "invalid_labels")
                else:
                    try:
                        lkey = tuple(sorted(labels.items()))
                        known = lkey in good_labels
                    except TypeError:  # an unhashable value (list, object)
                        known = False
                    if not known:
                        if len(labels) > max_labels:
                            problem = ("labels", f"more than {max_labels} labels", "too_many_labels")
                        else:
                            for k, v in labels.items():
                                bad = label_problem(k, v, max_len)
                                if bad:
                                    problem = ("labels" + bad[0], bad[1], "invalid_labels")
                                    break
                        if problem is None:
                            good_labels.add(lkey)
            value = s.get("value")
            if problem is None:
                kind = type(value)
                if kind is int:
                    if abs(value) > 1.7e308:
                        problem = ("value", "value out of range", "invalid_value")
                    value = float(value)
                elif kind is not float:
                    problem = ("value", "value must be a finite number", "invalid_value")
                elif not math.isfinite(value):
                    problem = ("value", "value must be a finite number", "invalid_value")
            if problem is None:
                ts = s.get("timestamp")
                if ts is None:
                    t = now_us
                else:
                    t = time_us(ts)
                    if t is None:
                        problem = ("timestamp", "timestamp must be RFC 3339 text or Unix seconds", "invalid_timestamp")
                    elif t < lo or t > hi:
                        problem = ("timestamp", f"timestamp outside the accepted window (now - {settings.max_past_s}s .. now + {settings.max_future_s}s)", "out_of_window")
            if problem is None:
                typ = s.get("type")
                if typ is not None and typ not in TYPES:
                    problem = ("type", "type must be 'gauge' or 'counter'", "invalid")
                else:
                    key = (name, lkey)
                    k = index.get(key)
                    if k is None:
                        k = len(keys)
                        index[key] = k
                        keys.append(SeriesKey(name, labels or {}, typ))
                    elif typ is not None:
                        declared = keys[k].type
                        if declared is None:
                            keys[k].type = typ
                        elif declared != typ:
                            problem = ("type", f"series declared both {declared} and {typ} in this batch", "type_conflict")
                    if problem is None:
                        mark = (k, t)
                        if mark in seen:
                            problem = ("timestamp", "duplicate sample: same series and timestamp as an earlier sample of this batch", "duplicate")
                        else:
                            seen.add(mark)
                            rows.append((t, k, value))
                            if type(value) is float:
                                try:
                                    fast[(name, tuple(labels.items()) if labels else (), typ)] = k
                                except (TypeError, AttributeError):
                                    pass
        if problem is not None:
            invalid += 1
            if first is None:
                first = (i, problem[0], problem[1], problem[2])
    if first is not None:
        raise InvalidBatch(first[0], first[1], first[2], invalid, first[3])
    return Batch(keys, index, rows)
