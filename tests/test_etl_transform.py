"""A reading document -> row, samples or reject: time, source, payload and series
rules, with missing, null, wrongly typed and odd BSON values.

No database and no MongoDB: documents are built as the driver decodes them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from bson import Decimal128, Int64, ObjectId
from bson.binary import Binary
from bson.datetime_ms import DatetimeMS
from etl_helpers import etl_settings

from etl.source import Unreadable
from etl.transform import Rejected, Transformer, mongo_id_text

OID = ObjectId("6650a1b2c3d4e5f601234567")
T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def transformer(**env: str) -> Transformer:
    return Transformer(etl_settings(**env))


def row(doc, **env):
    return transformer(**env).row(doc)[0]


def reason(doc, **env) -> str:
    with pytest.raises(Rejected) as caught:
        transformer(**env).row(doc)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (T, T),
        (datetime(2026, 11, 20, 12, 0), T),  # a naive BSON date is UTC
        ("2026-11-20T12:00:00Z", T),
        ("2026-11-20T13:00:00+01:00", T),
        ("2026-11-20T12:00:00.123456Z", T + timedelta(microseconds=123456)),
        (T.timestamp(), T),                     # Unix seconds (double)
        (int(T.timestamp()), T),                # Unix seconds (int32/64)
        (Int64(int(T.timestamp()) * 1000), T),  # milliseconds: magnitude >= 1e11
        (Decimal128(str(int(T.timestamp()))), T),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_time_forms(value, expected):
    assert row({"_id": OID, "time": value}).reading_time == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yesterday", "field 'time' is text that is not an RFC 3339 time: 'yesterday'"),
        ("", "field 'time' is text that is not an RFC 3339 time: ''"),
        ("2026-11-20T12:00:00", "field 'time' is a time without a time zone: '2026-11-20T12:00:00' (add Z or +hh:mm)"),
        (True, "field 'time' is a boolean (True); expected a date, RFC 3339 text or Unix seconds"),
        ({"$date": 1}, "field 'time' is an object ({'$date': 1}); expected a date, RFC 3339 text or Unix seconds"),
        ([T], "field 'time' is an array ("),
        (float("nan"), "field 'time' is nan, not a time"),
        (1e300, "field 'time' is 1e+300, outside the years 1..9999"),
        (DatetimeMS(2**62), "field 'time' is a date outside years 1..9999"),
        (Binary(b"x", 0), "field 'time' is a Binary ("),
    ],
)
def test_wrong_times_reject_with_the_field_named(value, expected):
    assert reason({"_id": OID, "time": value}).startswith(expected)


def test_time_candidates_in_order_and_the_objectid_fallback():
    assert row({"_id": OID, "ts": T, "created_at": T + timedelta(days=1)}).reading_time == T
    # Missing and null are "not set": the next candidate, then the ObjectId's time.
    assert row({"_id": OID, "time": None, "ts": T}).reading_time == T
    assert row({"_id": OID, "time": None}).reading_time == OID.generation_time
    assert row({"_id": OID, "meta": {"at": T}}, ETL_TIME_FIELDS="meta.at").reading_time == T
    assert row({"_id": OID, "at": [T]}, ETL_TIME_FIELDS="at.0").reading_time == T
    assert reason({"_id": 7}) == (
        "no reading time: none of the fields time, timestamp, ts, reading_time, recorded_at, "
        "created_at is set, and _id is not an ObjectId"
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"source_id": "s-1", "device_id": "d-1"}, "s-1"),
        ({"device_id": "d-1"}, "d-1"),
        ({"source_id": None, "device_id": "d-1"}, "d-1"),
        ({"source_id": "", "sensor_id": 17}, "17"),
        ({"device": Int64(5)}, "5"),
        ({"device": OID}, str(OID)),
        ({"device": Binary.from_uuid(uuid.UUID(int=1))}, str(uuid.UUID(int=1))),
        ({}, None),
    ],
)
def test_source_identity(doc, expected):
    assert row({"_id": OID, "time": T, **doc}).source_id == expected


@pytest.mark.parametrize("value", [1.5, True, {"id": 1}, [1], Decimal128("1")])
def test_wrong_source_rejects(value):
    assert "field 'device_id' is " in reason({"_id": OID, "time": T, "device_id": value})
    assert "expected text or an integer identifying the source" in reason({"_id": OID, "time": T, "device_id": value})


def test_payload_is_the_document_without_the_etl_fields():
    doc = {"_id": OID, "status": "processing", "pgpulse_etl": {"run_id": "x"}, "time": T,
           "v": Decimal128("1.10"), "tags": ["a", {"b": None}]}
    payload = json.loads(row(doc).payload)
    assert payload == {"_id": {"$oid": str(OID)}, "time": {"$date": "2026-11-20T12:00:00Z"},
                       "v": {"$numberDecimal": "1.10"}, "tags": ["a", {"b": None}]}


def test_mongo_id_text():
    assert mongo_id_text(OID) == str(OID)
    # The BSON type is kept: a string has its quotes, a number none.
    assert mongo_id_text("abc") == '"abc"'
    assert mongo_id_text(str(OID)) == f'"{OID}"'
    assert mongo_id_text(5) == "5" and mongo_id_text("5") == '"5"'
    assert mongo_id_text(Int64(5)) == "5"  # MongoDB holds 5 and NumberLong(5) as one _id
    assert mongo_id_text(Binary.from_uuid(uuid.UUID(int=2))) == '{"$uuid":"00000000-0000-0000-0000-000000000002"}'
    assert mongo_id_text({"site": "n", "seq": 1}) == '{"site":"n","seq":1}'


def test_samples_from_mapped_numeric_fields():
    t = transformer(ETL_SERIES="temperature,env.pressure=pressure_hpa,missing",
                    ETL_SERIES_LABELS="site,unit=meta.unit")
    doc = {"_id": OID, "time": T, "device_id": "d1", "temperature": Int64(21), "site": "north",
           "env": {"pressure": Decimal128("1013.25")}, "meta": {"unit": "C"}}
    _, samples = t.row(doc)
    assert [(s.metric, s.value, s.time) for s in samples] == [
        ("reading_temperature", 21.0, T), ("pressure_hpa", 1013.25, T)]
    assert json.loads(samples[0].labels) == {"source": "d1", "site": "north", "unit": "C"}


def test_samples_skip_null_and_non_finite_and_reject_non_numbers():
    t = transformer(ETL_SERIES="a,b,c")
    _, samples = t.row({"_id": OID, "time": T, "a": None, "b": float("nan"), "c": 1})
    assert [(s.metric, s.value) for s in samples] == [("reading_c", 1.0)]
    with pytest.raises(Rejected, match="field 'a' is a string \\('12.5'\\); ETL_SERIES maps it to the metric 'reading_a'"):
        t.row({"_id": OID, "time": T, "a": "12.5"})
    with pytest.raises(Rejected, match="field 'a' is a boolean"):
        t.row({"_id": OID, "time": T, "a": True})
    with pytest.raises(Rejected, match="ETL_SERIES_LABELS makes it the label 'site'"):
        transformer(ETL_SERIES="a", ETL_SERIES_LABELS="site").row(
            {"_id": OID, "time": T, "a": 1, "site": {"x": 1}})


def test_batch_keeps_going_past_bad_documents():
    docs = [
        {"_id": ObjectId(), "time": T},
        {"_id": ObjectId(), "time": "bad"},
        {"_id": "x\x00y", "time": T},
        Unreadable(ObjectId(), "the document cannot be decoded: boom"),
        {"_id": 5, "time": T},
        {"_id": "5", "time": T},  # another document than the int 5
        {"_id": 5, "time": T, "again": True},  # the same _id twice in a batch: refused
        {"_id": ObjectId(), "time": T, "s": "bad\udcffutf8"},
    ]
    batch = transformer().batch(docs)
    assert [r.mongo_id for r in batch.rows] == [str(docs[0]["_id"]), "5", '"5"']
    reasons = [r.reason for r in batch.rejects]
    assert reasons[0].startswith("field 'time' is text")
    assert reasons[1] == "field '_id' contains a NUL character (\\u0000), which PostgreSQL cannot store"
    assert reasons[2] == "the document cannot be decoded: boom"
    assert reasons[3] == "_id 5 is the _id of another document in this batch"
    assert reasons[4] == "field 's' is not valid UTF-8 text"
    # Rejects are storable: NUL and bad UTF-8 repaired in id, document and reason.
    assert batch.rejects[1].mongo_id == '"x\ufffdy"'
    assert json.loads(batch.rejects[4].document)["s"] == "bad\ufffdutf8"
