"""BSON -> JSON without loss of meaning: the documented mapping, checked against
MongoDB's own Relaxed Extended JSON (bson.json_util) and by round trips.

No database and no MongoDB: pure conversion of decoded BSON values.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import bson
import pytest
from bson import DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp, json_util
from bson.binary import Binary
from bson.code import Code
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.json_util import JSONMode, JSONOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from etl import bsonjson

RELAXED = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)
READ_BACK = JSONOptions(tz_aware=True, tzinfo=UTC, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
DECODE = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
OID = ObjectId("6650a1b2c3d4e5f601234567")
U = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")


def as_json(value):
    return json.loads(bsonjson.dumps({"v": value}))["v"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (OID, {"$oid": "6650a1b2c3d4e5f601234567"}),
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), {"$date": "2024-05-01T12:00:00Z"}),
        (datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC), {"$date": "2024-05-01T12:00:00.250Z"}),
        (datetime(1960, 1, 1, tzinfo=UTC), {"$date": {"$numberLong": "-315619200000"}}),
        (DatetimeMS(2**62), {"$date": {"$numberLong": str(2**62)}}),
        (Decimal128("12.30"), {"$numberDecimal": "12.30"}),
        (Decimal128("-Infinity"), {"$numberDecimal": "-Infinity"}),
        (Binary.from_uuid(U), {"$uuid": str(U)}),
        (Binary(b"\x00\x01\xff", 0), {"$binary": {"base64": "AAH/", "subType": "00"}}),
        (b"ab", {"$binary": {"base64": "YWI=", "subType": "00"}}),
        (Binary(b"0123456789abcdef", 3), {"$binary": {"base64": "MDEyMzQ1Njc4OWFiY2RlZg==", "subType": "03"}}),
        (Binary(b"\x07", 0x80), {"$binary": {"base64": "Bw==", "subType": "80"}}),
        (Int64(2**40), 2**40),
        (float("nan"), {"$numberDouble": "NaN"}),
        (float("inf"), {"$numberDouble": "Infinity"}),
        (float("-inf"), {"$numberDouble": "-Infinity"}),
        (1.5, 1.5),
        (True, True),
        (None, None),
        (Regex("^a.*", re.I | re.M), {"$regularExpression": {"pattern": "^a.*", "options": "im"}}),
        (Timestamp(1700000000, 7), {"$timestamp": {"t": 1700000000, "i": 7}}),
        (Code("f()"), {"$code": "f()"}),
        (Code("f(x)", {"x": 1}), {"$code": "f(x)", "$scope": {"x": 1}}),
        (DBRef("devices", OID, "inv"), {"$ref": "devices", "$id": {"$oid": str(OID)}, "$db": "inv"}),
        (MinKey(), {"$minKey": 1}),
        (MaxKey(), {"$maxKey": 1}),
        ({"a": [1, {"b": OID}], "c": {}}, {"a": [1, {"b": {"$oid": str(OID)}}], "c": {}}),
    ],
)
def test_documented_mapping(value, expected):
    assert as_json(value) == expected


def test_uuid_objects_map_like_uuid_binaries():
    # The ETL's client decodes subtype 4 as Binary (uuidRepresentation=unspecified,
    # whatever MONGO_URI says); uuid.UUID objects only reach the reference walker.
    assert json.loads(bsonjson.dumps_walked({"v": U})) == {"v": {"$uuid": str(U)}}


def test_same_as_mongodb_relaxed_extended_json_except_uuid():
    doc = {
        "_id": OID, "t": datetime(2024, 5, 1, tzinfo=UTC), "old": datetime(1900, 1, 1, tzinfo=UTC),
        "far": DatetimeMS(-(2**60)), "d": Decimal128("1E+10"), "b": Binary(b"x", 5), "i": Int64(-5),
        "ts": Timestamp(1, 2), "re": Regex("x", "s"), "code": Code("c", {"k": [1]}),
        "ref": DBRef("c", 5, extra="e"), "nan": float("nan"), "neg": -0.5, "big": 2**62,
        "nested": {"deep": [[1, 2], {"x": None, "y": True}]}, "mk": MinKey(),
    }
    assert json.loads(bsonjson.dumps(doc)) == json.loads(json_util.dumps(doc, json_options=RELAXED))


def test_round_trip_through_bson_restores_every_value():
    doc = {
        "_id": OID, "t": datetime(2024, 5, 1, 0, 0, 0, 123000, tzinfo=UTC), "far": DatetimeMS(2**50),
        "dec": Decimal128("0.1000"), "uuid": Binary.from_uuid(U), "bin": Binary(b"\x00", 0x81),
        "i64": Int64(9_007_199_254_740_993), "ts": Timestamp(5, 6), "re": Regex("a", "i"),
        "inf": float("-inf"), "list": [1, "two", {"three": 3.0}], "ref": DBRef("c", OID),
    }
    decoded = bson.decode(bson.encode(doc), codec_options=DECODE)  # as the driver hands it over
    back = json_util.loads(bsonjson.dumps(decoded).decode(), json_options=READ_BACK)
    assert bson.encode(back) == bson.encode(decoded)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False), st.sampled_from([math.nan, math.inf, -math.inf]), st.text().filter(lambda s: "\x00" not in s),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
    .map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    st.builds(ObjectId), st.decimals(min_value=-(10**12), max_value=10**12, places=6).map(lambda d: Decimal128(str(d))),
    st.binary(max_size=20).map(lambda b: Binary(b, 0x80)), st.uuids().map(Binary.from_uuid),
)
_keys = st.text(min_size=1, max_size=8).filter(lambda k: "\x00" not in k and not k.startswith("$") and "." not in k)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
                       max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_any_document_round_trips(doc):
    decoded = bson.decode(bson.encode(doc), codec_options=DECODE)
    out = bsonjson.dumps(decoded)
    # The fast path (orjson) and the reference walker agree on every document.
    assert out == bsonjson.dumps_walked(decoded)
    back = json_util.loads(out.decode(), json_options=READ_BACK)
    assert bson.encode(back) == bson.encode(decoded)


def test_nul_character_is_unrepresentable_and_named():
    with pytest.raises(bsonjson.Unrepresentable) as caught:
        bsonjson.dumps({"a": {"b": ["ok", "bad\x00"]}})
    assert str(caught.value) == "field 'a.b.1' contains a NUL character (\\u0000), which PostgreSQL cannot store"
    with pytest.raises(bsonjson.Unrepresentable, match="field 'k\\\\x00' has a name"):
        bsonjson.dumps({"k\x00": 1})


def test_invalid_utf8_is_unrepresentable_and_named():
    with pytest.raises(bsonjson.Unrepresentable) as caught:
        bsonjson.dumps({"x": [{"y": "ok\udcff"}]})
    assert str(caught.value) == "field 'x.0.y' is not valid UTF-8 text"


def test_lenient_dump_repairs_what_jsonb_cannot_hold():
    out = json.loads(bsonjson.dumps_lenient({"a": "x\x00y", "b": "\udcffz", "c": object(), "d": 1}))
    assert out == {"a": "x\ufffdy", "b": "\ufffdz", "c": {"$unsupported": "object"}, "d": 1}


def test_unknown_type_is_unrepresentable():
    with pytest.raises(bsonjson.Unrepresentable, match="field 'c' has a value of type object"):
        bsonjson.dumps({"c": object()})


def test_dates_keep_the_instant_whatever_the_zone():
    plus2 = datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert as_json(plus2) == {"$date": "2024-05-01T14:00:00Z"}
    assert as_json(datetime(2024, 5, 1, 14, 0)) == {"$date": "2024-05-01T14:00:00Z"}  # naive = UTC
    assert math.isnan(json_util.loads(bsonjson.dumps({"n": float("nan")}).decode())["n"])
