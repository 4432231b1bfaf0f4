"""A reading document -> a ``reading_analytics`` row (and, optionally, samples).

* ``mongo_id``: the ``_id`` as text that keeps its BSON type: an ObjectId as its 24
  hex digits, anything else as its JSON text in the Extended JSON mapping of
  :mod:`etl.bsonjson`: a string with its quotes (``"7"``), a number without
  (``7``), other types as objects (``{"$uuid": "..."}``). So ``{_id: 7}`` and
  ``{_id: "7"}`` are two rows, and no string can pass for an ObjectId.
* ``reading_time``: the first of ETL_TIME_FIELDS that is set (not missing, not
  null); a BSON date, RFC 3339 text with a time zone, or Unix seconds (a number of
  magnitude >= 1e11 is taken as milliseconds). None set: the ObjectId's creation
  time. A field that is set but holds something else rejects the document: a
  wrong time is worse than none.
* ``source_id``: the first of ETL_SOURCE_FIELDS that is set to non-empty text, an
  integer, an ObjectId or a UUID (as text); none: NULL. Other types reject.
* ``payload``: the whole document as JSON (see :mod:`etl.bsonjson`), without
  the fields the ETL owns (``status``, ``pgpulse_etl``).
* samples (ETL_SERIES): each mapped field that holds a finite number gives one
  sample of its metric at the reading time, labelled with the source and the
  ETL_SERIES_LABELS fields. Missing, null, NaN and infinite values give no sample;
  a string or object where a number is mapped rejects the document.

A document that cannot become a row is a :class:`Reject` with a reason naming the
field and what was wrong; it never stops the rest of the batch, whatever the
transform meets in it (see ``TRANSFORM_ERRORS``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from bson import Decimal128, Int64, ObjectId
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS

from etl import bsonjson
from etl.settings import OWNED_FIELDS, SOURCE_LABEL, EtlSettings
from etl.source import Unreadable

log = logging.getLogger("etl.transform")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLIS_THRESHOLD = 1e11  # 1e11 s is the year 5138; 1e11 ms is 1973
_MISSING = object()
_OWNED = frozenset(OWNED_FIELDS)


class Rejected(ValueError):
    """This document cannot be loaded; the message is the reject reason."""


# What else transforming one document can raise, from data that no rule above
# foresaw: ValueError (and UnicodeError: text that is not valid UTF-8, a Decimal128
# sNaN as a number), TypeError (a value orjson cannot encode), ArithmeticError
# (OverflowError: a date at the calendar's edge; decimal.InvalidOperation),
# RecursionError (a document nested deeper than Python's stack). Documents come from
# another service and may hold anything: such an error makes that one document a
# reject that records the exception's type and message (and the log keeps the
# traceback), never a failed batch that would be claimed again on every run and
# hold back every document behind it. Anything else is a bug and fails the run.
TRANSFORM_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, ArithmeticError, RecursionError)


@dataclasses.dataclass(slots=True)
class Row:
    mongo_id: str
    key: Any  # the _id value itself, for MongoDB updates
    reading_time: datetime
    source_id: str | None
    payload: bytes  # JSON text


@dataclasses.dataclass(slots=True)
class Sample:
    mongo_id: str
    time: datetime
    metric: str
    labels: bytes  # JSON object text
    value: float


@dataclasses.dataclass(slots=True)
class Reject:
    mongo_id: str
    key: Any
    reason: str
    document: bytes  # JSON text, repaired where JSONB cannot hold it
    source_id: str | None


@dataclasses.dataclass
class Batch:
    rows: list[Row] = dataclasses.field(default_factory=list)
    samples: list[Sample] = dataclasses.field(default_factory=list)
    rejects: list[Reject] = dataclasses.field(default_factory=list)


def kind(value: Any) -> str:
    """A short, BSON-flavoured name of a value's type for reject reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, datetime | DatetimeMS):
        return "date"
    return type(value).__name__


def a_kind(value: Any) -> str:
    """``kind`` with its article: "an object", "a string"."""
    name = kind(value)
    return ("an " if name[0].lower() in "aeio" else "a ") + name


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mongo_id_text(key: Any) -> str:
    """The stored form of an ``_id``, which keeps its BSON type (see the module doc)."""
    if isinstance(key, ObjectId):
        return str(key)
    return orjson.dumps(bsonjson.convert(key)).decode()


def lookup(document: dict, parts: tuple[str, ...]) -> Any:
    """The value at a dotted path (array elements by index), or _MISSING."""
    value: Any = document
    for part in parts:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is _MISSING:
            return value
    return value


def _number(value: Any) -> float | None:
    """A finite or non-finite float for numeric BSON values, None for the rest."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Decimal128):
        return float(value.to_decimal())
    return None


def parse_time(value: Any, field: str) -> datetime:
    """A reading time from a BSON date, RFC 3339 text or Unix seconds/milliseconds."""
    if isinstance(value, datetime):
        return bsonjson.as_utc(value)
    if isinstance(value, DatetimeMS):
        raise Rejected(f"field {field!r} is a date outside years 1..9999 ({int(value)} ms since 1970)")
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise Rejected(f"field {field!r} is text that is not an RFC 3339 time: {_show(value)}") from None
        if parsed.tzinfo is None:
            raise Rejected(f"field {field!r} is a time without a time zone: {_show(value)} (add Z or +hh:mm)")
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC, 0001-01-01T00:00+14:00 in year 0.
            raise Rejected(f"field {field!r} is {_show(value)}, outside the years 1..9999 in UTC") from None
    number = _number(value)
    if number is None:
        raise Rejected(
            f"field {field!r} is {a_kind(value)} ({_show(value)}); expected a date, RFC 3339 "
            "text or Unix seconds"
        )
    if not math.isfinite(number):
        raise Rejected(f"field {field!r} is {number}, not a time")
    seconds = number / 1000 if abs(number) >= MILLIS_THRESHOLD else number
    try:
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise Rejected(f"field {field!r} is {_show(value)}, outside the years 1..9999") from None


def _source_text(value: Any, field: str) -> str | None:
    if isinstance(value, str):
        return value or None  # empty text identifies nothing: try the next field
    if isinstance(value, int | Int64) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, ObjectId | uuid.UUID):
        return str(value)
    if isinstance(value, Binary) and value.subtype == 4 and len(value) == 16:
        return str(uuid.UUID(bytes=bytes(value)))
    raise Rejected(
        f"field {field!r} is {a_kind(value)} ({_show(value)}); expected text or an integer "
        "identifying the source"
    )


def _too_deep(key: Any) -> bytes:
    """The stored document of a reject whose document cannot be written out even
    repaired (nested too deep): its _id, so that it can still be replayed."""
    note = "the document is nested too deeply to store"
    try:
        return orjson.dumps({"_id": bsonjson.repair(key), "$unrepresentable": note})
    except TRANSFORM_ERRORS:
        return orjson.dumps({"$unrepresentable": note})


class Transformer:
    """Turns claimed documents into rows, samples and rejects, with the settings'
    field lists split once."""

    def __init__(self, settings: EtlSettings) -> None:
        self.time_fields = [(f, tuple(f.split("."))) for f in settings.time_fields]
        self.source_fields = [(f, tuple(f.split("."))) for f in settings.source_fields]
        self.series = [(f, tuple(f.split(".")), metric) for f, metric in settings.series]
        self.labels = [(f, tuple(f.split(".")), label) for f, label in settings.series_labels]

    # -- the parts of one document -------------------------------------------------

    def reading_time(self, document: dict) -> datetime:
        for field, parts in self.time_fields:
            value = lookup(document, parts)
            if value is not _MISSING and value is not None:
                return parse_time(value, field)
        key = document.get("_id")
        if isinstance(key, ObjectId):
            return key.generation_time
        names = ", ".join(f for f, _ in self.time_fields) or "(none configured)"
        raise Rejected(f"no reading time: none of the fields {names} is set, and _id is not an ObjectId")

    def source_id(self, document: dict) -> str | None:
        for field, parts in self.source_fields:
            value = lookup(document, parts)
            if value is not _MISSING and value is not None:
                text = _source_text(value, field)
                if text is not None:
                    return text
        return None

    def samples(self, mongo_id: str, document: dict, time: datetime, source: str | None) -> list[Sample]:
        values: list[tuple[str, float]] = []
        for field, parts, metric in self.series:
            value = lookup(document, parts)
            if value is _MISSING or value is None:
                continue
            number = _number(value)
            if number is None:
                raise Rejected(
                    f"field {field!r} is {a_kind(value)} ({_show(value)}); ETL_SERIES maps it "
                    f"to the metric {metric!r}, which needs a number"
                )
            if math.isfinite(number):
                values.append((metric, number))
        if not values:
            return []
        labels: dict[str, str] = {SOURCE_LABEL: source} if source is not None else {}
        for field, parts, label in self.labels:
            value = lookup(document, parts)
            if value is _MISSING or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise Rejected(
                    f"field {field!r} is {a_kind(value)} ({_show(value)}); ETL_SERIES_LABELS "
                    f"makes it the label {label!r}, which needs text or an integer"
                )
            labels[label] = str(value)
        label_json = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        return [Sample(mongo_id, time, metric, label_json, number) for metric, number in values]

    # -- whole documents ----------------------------------------------------------

    def row(self, document: dict) -> tuple[Row, list[Sample]]:
        """The row and samples of one document; raises :class:`Rejected`."""
        key = document.get("_id", _MISSING)
        if key is _MISSING:
            raise Rejected("the document has no _id")
        try:
            payload = bsonjson.dumps(document, _OWNED)
            mongo_id = mongo_id_text(key)
        except bsonjson.Unrepresentable as exc:
            raise Rejected(str(exc)) from None
        time = self.reading_time(document)
        source = self.source_id(document)
        samples = self.samples(mongo_id, document, time, source) if self.series else []
        return Row(mongo_id, key, time, source, payload), samples

    def reject(self, document: dict, reason: str) -> Reject:
        key = document.get("_id")
        body = {k: v for k, v in document.items() if k not in OWNED_FIELDS}
        # Whatever made the document fail may sit in its _id or source too: keep
        # them storable (text without NUL, valid UTF-8).
        try:
            mongo_id = bsonjson.clean_text(mongo_id_text(key))
        except TRANSFORM_ERRORS:  # Unrepresentable is a ValueError
            try:
                mongo_id = orjson.dumps(bsonjson.repair(key)).decode()
            except TRANSFORM_ERRORS:
                # An _id nested too deep to write out: such rejects share this key.
                mongo_id = '{"$unrepresentable":"_id"}'
        try:
            source = self.source_id(document)
        except (Rejected, *TRANSFORM_ERRORS):
            source = None
        if source is not None:
            source = bsonjson.clean_text(source)
        try:
            stored = bsonjson.dumps_lenient(body)
        except TRANSFORM_ERRORS:
            stored = _too_deep(key)
        return Reject(mongo_id, key, bsonjson.clean_text(reason), stored, source)

    def batch(self, documents: Iterable[dict]) -> Batch:
        """Rows, samples and rejects of a batch; a bad document never stops the others."""
        out = Batch()
        seen: set[str] = set()
        for document in documents:
            if isinstance(document, Unreadable):
                out.rejects.append(self.reject(document, document.reason))
                continue
            try:
                row, samples = self.row(document)
                if row.mongo_id in seen:
                    # Two documents of one _id in a batch (a source that is not
                    # MongoDB could send them): one row cannot take both.
                    raise Rejected(f"_id {row.mongo_id} is the _id of another document in this batch")
            except Rejected as exc:
                out.rejects.append(self.reject(document, str(exc)))
                continue
            except TRANSFORM_ERRORS as exc:
                reject = self.reject(document, f"the document cannot be transformed: "
                                               f"{type(exc).__name__}: {str(exc)[:500]}")
                log.warning("document %s rejected: the transform raised %s", reject.mongo_id,
                            type(exc).__name__, exc_info=True)
                out.rejects.append(reject)
                continue
            seen.add(row.mongo_id)
            out.rows.append(row)
            out.samples.extend(samples)
        return out
