"""BSON values -> JSON, without loss of meaning.

The mapping is MongoDB's *Relaxed Extended JSON v2*: numbers, strings, booleans,
null, objects and arrays stay plain JSON; every other BSON type becomes a small
object whose single ``$`` key names the type, so ``bson.json_util.loads`` turns the
JSON back into the same values. The one deviation: UUIDs (binary subtype 4) use the
``{"$uuid": "..."}`` form the specification defines for readers, since it is far
easier to query than base64.

==================  ==========================================================
BSON                JSON
==================  ==========================================================
double              number; NaN, Infinity, -Infinity -> {"$numberDouble": "NaN"}
int32, int64        number (exact: JSONB keeps numbers as numeric)
decimal128          {"$numberDecimal": "12.30"} (exact text, trailing zeros kept)
string              string (a NUL character cannot be stored: the document is
                    rejected, see transform)
objectId            {"$oid": "<24 hex digits>"}
date                {"$date": "2024-05-01T12:00:00.250Z"} for years 1970..9999,
                    else {"$date": {"$numberLong": "<ms since epoch>"}}
binary, subtype 4   {"$uuid": "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"}
binary, other       {"$binary": {"base64": "...", "subType": "00"}}
regex               {"$regularExpression": {"pattern": "...", "options": "i"}}
timestamp           {"$timestamp": {"t": <seconds>, "i": <increment>}}
javascript          {"$code": "..."} (with "$scope": {...} when it has one)
dbref               {"$ref": "coll", "$id": <id>, "$db": "db"}
minKey, maxKey      {"$minKey": 1}, {"$maxKey": 1}
object, array       object, array (converted recursively, key order kept)
==================  ==========================================================
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from bson import DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.tz_util import utc as bson_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RE_FLAGS = (("i", re.I), ("l", re.L), ("m", re.M), ("s", re.S), ("u", re.U), ("x", re.X))
MAX_DEPTH = 254  # levels of nesting orjson writes (MongoDB itself stores at most 100 levels)
NUL_REASON = "contains a NUL character (\\u0000), which PostgreSQL cannot store"


class Unrepresentable(ValueError):
    """A value that JSONB cannot hold; ``path`` says where it is in the document."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def __str__(self) -> str:
        where = ".".join(self.path)
        return f"field {where!r} {self.reason}" if where else self.reason


def _str(value: str) -> str:
    if "\x00" in value:
        raise Unrepresentable(NUL_REASON)
    return value


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return {"$numberDouble": "NaN"}
    return {"$numberDouble": "Infinity" if value > 0 else "-Infinity"}


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken as UTC, as BSON dates are.

    The driver's own UTC zone is kept as it is: it is UTC, and replacing it costs
    more than the rest of a conversion."""
    zone = value.tzinfo
    if zone is UTC or zone is bson_utc:
        return value
    if zone is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _date(value: datetime) -> dict:
    if 1970 <= value.year <= 9999:
        value = as_utc(value)
        # "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00" -> "...SS.mmmZ" (milliseconds) or "...SSZ".
        text = value.isoformat()
        return {"$date": (text[:23] if value.microsecond >= 1000 else text[:19]) + "Z"}
    delta = as_utc(value) - EPOCH
    millis = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return {"$date": {"$numberLong": str(millis)}}


_COMBINATION_MASK = 0x3 << 61  # the "11" combination form: NaN, Infinity, non-canonical
_COEFFICIENT_MASK = (1 << 49) - 1


def decimal_text(value: Decimal128) -> str:
    """``str(value)`` (the IEEE 754 / General Decimal Arithmetic scientific string),
    without going through decimal.Decimal: several times faster for the usual case."""
    bid = value.bid
    high = int.from_bytes(bid[8:], "little")
    if high & _COMBINATION_MASK == _COMBINATION_MASK:
        return str(value)  # NaN, Infinity and the rare large-coefficient form
    coefficient = str(((high & _COEFFICIENT_MASK) << 64) | int.from_bytes(bid[:8], "little"))
    exponent = ((high >> 49) & 0x3FFF) - 6176
    sign = "-" if high >> 63 else ""
    adjusted = exponent + len(coefficient) - 1
    if exponent <= 0 and adjusted >= -6:
        if exponent == 0:
            return sign + coefficient
        point = len(coefficient) + exponent
        if point > 0:
            return f"{sign}{coefficient[:point]}.{coefficient[point:]}"
        return f"{sign}0.{'0' * -point}{coefficient}"
    mantissa = coefficient[0] + ("." + coefficient[1:] if len(coefficient) > 1 else "")
    return f"{sign}{mantissa}E{'+' if adjusted >= 0 else ''}{adjusted}"


def _binary(value: bytes, subtype: int) -> dict:
    if subtype == 4 and len(value) == 16:
        return {"$uuid": str(uuid.UUID(bytes=bytes(value)))}
    return {"$binary": {"base64": base64.b64encode(value).decode("ascii"), "subType": f"{subtype:02x}"}}


def _regex(value: Regex) -> dict:
    flags = value.flags
    if isinstance(flags, int):
        options = "".join(letter for letter, bit in _RE_FLAGS if flags & bit)
    else:
        options = "".join(sorted(flags))
    return {"$regularExpression": {"pattern": _str(value.pattern), "options": options}}


def _code(value: Code) -> dict:
    out: dict[str, Any] = {"$code": _str(str(value))}
    if value.scope is not None:
        out["$scope"] = convert(value.scope)
    return out


def _dbref(value: DBRef) -> dict:
    # as_doc() is {"$ref", "$id", "$db"?, extra fields...}: exactly the JSON form.
    return _dict(dict(value.as_doc()))


def _item(item: Any) -> Any:
    # The common scalars inline; everything else through the type table.
    kind = type(item)
    if kind is str:
        if "\x00" in item:
            raise Unrepresentable(NUL_REASON)
        return item
    if kind is int or kind is bool or item is None:
        return item
    if kind is float:
        return item if item - item == 0 else _float(item)  # x - x is 0 only when finite
    return convert(item)


def _dict(value: dict, skip: frozenset[str] = frozenset()) -> dict:
    out = {}
    for key, item in value.items():
        if key in skip:
            continue
        try:
            if "\x00" in key:
                raise Unrepresentable(NUL_REASON.replace("contains", "has a name that contains"))
            out[key] = _item(item)
        except Unrepresentable as exc:
            exc.path.insert(0, key)
            raise
    return out


def _list(value: list) -> list:
    out = []
    for index, item in enumerate(value):
        try:
            out.append(_item(item))
        except Unrepresentable as exc:
            exc.path.insert(0, str(index))
            raise
    return out


def _same(value: Any) -> Any:
    return value


_HANDLERS = {
    str: _str,
    int: _same,
    bool: _same,
    type(None): _same,
    float: _float,
    dict: _dict,
    list: _list,
    tuple: _list,
    Int64: int,
    datetime: _date,
    DatetimeMS: lambda v: {"$date": {"$numberLong": str(int(v))}},
    ObjectId: lambda v: {"$oid": str(v)},
    Decimal128: lambda v: {"$numberDecimal": decimal_text(v)},
    Binary: lambda v: _binary(v, v.subtype),
    bytes: lambda v: _binary(v, 0),
    uuid.UUID: lambda v: {"$uuid": str(v)},
    Regex: _regex,
    Timestamp: lambda v: {"$timestamp": {"t": v.time, "i": v.inc}},
    Code: _code,
    DBRef: _dbref,
    MinKey: lambda v: {"$minKey": 1},
    MaxKey: lambda v: {"$maxKey": 1},
}


def convert(value: Any) -> Any:
    """``value`` as plain JSON-able Python (dict, list, str, int, float, bool, None).

    Raises :class:`Unrepresentable` for what JSONB cannot hold (NUL characters) or
    an unknown type.
    """
    handler = _HANDLERS.get(type(value))
    if handler is None:
        # Subclasses (SON, a str subclass, ...) take their base type's handler.
        for base, candidate in _HANDLERS.items():
            if isinstance(value, base) and base is not bool:
                handler = candidate
                break
        else:
            raise Unrepresentable(f"has a value of type {type(value).__name__} that has no JSON form")
    return handler(value)


# The fast path: orjson walks the document in C and calls _default only for the
# BSON types it does not know (and for datetimes and subclasses such as Code, a str
# subclass, so that nothing is serialised as a plain string by mistake).
_FAST = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def _default(value: Any) -> Any:
    return convert(value)


def dumps(document: dict, skip: frozenset[str] = frozenset()) -> bytes:
    """The JSON text (UTF-8) of a document without its ``skip`` fields; raises
    :class:`Unrepresentable`.

    orjson writes NaN and infinities as ``null`` and NUL as ``\\u0000`` (which JSONB
    refuses), so any output holding either text is made again by the Python walker,
    which maps the first to {"$numberDouble": ...} and rejects the second. Both paths
    give the same JSON for every document (tests/test_etl_bsonjson.py checks).
    """
    body = document
    if not skip.isdisjoint(document):
        body = dict(document)
        for key in skip:
            body.pop(key, None)
    try:
        out = orjson.dumps(body, default=_default, option=_FAST)
    except orjson.JSONEncodeError:
        out = None
    if out is None or b"null" in out or b"\\u0000" in out:
        return dumps_walked(body)
    return out


def dumps_walked(document: dict) -> bytes:
    """:func:`dumps` by the Python walker alone (the reference mapping)."""
    converted = _dict(document)
    try:
        return orjson.dumps(converted)
    except orjson.JSONEncodeError:
        # A string that is not valid UTF-8 (from a client decoding with
        # surrogateescape), or nesting deeper than orjson writes.
        raise _unwritable(document) from None


def _unwritable(value: Any) -> Unrepresentable:
    """The error naming where a string that is not valid UTF-8 sits, or saying that
    the document is nested too deeply."""
    found = _find_bad_utf8(value, ())
    if found is None:
        exc = Unrepresentable(f"is nested more than {MAX_DEPTH} levels deep")
        exc.path = [key for key, item in value.items() if _too_deep(item)][:1]
        return exc
    exc = Unrepresentable("is not valid UTF-8 text")
    exc.path = list(found)
    return exc


def _too_deep(value: Any) -> bool:
    try:
        orjson.dumps(value, default=_default, option=_FAST)
    except orjson.JSONEncodeError:
        return True
    except (Unrepresentable, RecursionError):
        return False
    return False


def _find_bad_utf8(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            hit = _find_bad_utf8(key, path + (key,)) or _find_bad_utf8(item, path + (key,))
            if hit is not None:
                return hit
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            hit = _find_bad_utf8(item, path + (str(index),))
            if hit is not None:
                return hit
    return None


def clean_text(text: str) -> str:
    """``text`` as PostgreSQL can store it: invalid UTF-8 and NUL become U+FFFD."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes MongoDB held
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def repair(value: Any) -> Any:
    """Like :func:`convert`, but never fails: what JSONB cannot hold is replaced by
    U+FFFD (text) or a ``{"$unsupported": "<type>"}`` marker. Only for rejects,
    whose reason already says what was wrong."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): repair(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [repair(v) for v in value]
    try:
        return convert(value)
    except Unrepresentable:
        if isinstance(value, Code | Regex | DBRef):
            return {"$unsupported": type(value).__name__, "text": repair(str(value))}
        return {"$unsupported": type(value).__name__}


def dumps_lenient(document: dict) -> bytes:
    """The JSON text of a document, repaired where JSONB cannot hold it (for rejects)."""
    try:
        return dumps(document)
    except Unrepresentable:
        return orjson.dumps(repair(document))
