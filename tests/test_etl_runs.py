"""ETL runs end to end: claim, load, mark; exactly-once across crashes; the record.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines),
read through the production MongoSource (etl_helpers.MockSource); crashes come from
a wrapping source (CrashAt). The unreachable-server test uses the real pymongo
driver against a closed port. PostgreSQL is the real server.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from bson import DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.code import Code
from bson.datetime_ms import DatetimeMS
from bson.errors import InvalidBSON
from etl_helpers import (
    Crash,
    CrashAt,
    MockSource,
    closed_port,
    count,
    etl_settings,
    reading,
    statuses,
)
from pymongo.errors import AutoReconnect

from etl import runs
from etl.service import EtlService
from etl.source import SourceError, SourceUnavailable
from pgpulse.store import etl_runs

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, etl

ROWS = "SELECT count(*) FROM reading_analytics"
T_ODD = datetime(2026, 11, 20, 12, 0, 0, 250000, tzinfo=UTC)
DISTINCT = "SELECT count(DISTINCT mongo_id) FROM reading_analytics"


def snapshot(conn) -> list[tuple]:
    return conn.execute(
        "SELECT mongo_id, reading_time, source_id, synced_at, run_id, payload FROM reading_analytics ORDER BY mongo_id"
    ).fetchall()


def test_run_loads_marks_and_records(db_url, conn, readings, etl):
    readings.insert_many([reading(i) for i in range(25)])
    service = etl(etl_settings(ETL_BATCH_SIZE="10"))
    result = service.run(max_batches=0)

    assert (result.status, result.claimed, result.loaded, result.rejected, result.batches) == (
        "succeeded", 25, 25, 0, 3)
    assert count(conn, ROWS) == 25
    assert statuses(readings) == {"processed": 25}
    row = conn.execute(
        "SELECT status, trigger, claimed, loaded, rejected, error, finished_at IS NOT NULL "
        "FROM etl_runs WHERE id = %s", (result.run_id,)
    ).fetchone()
    assert row == ("succeeded", "cli", 25, 25, 0, None, True)
    doc = readings.find_one({})
    assert doc["pgpulse_etl"]["run_id"] == result.run_id
    assert "lease_until" not in doc["pgpulse_etl"]
    # The client was made with explicit timeouts and tz-aware, lenient decoding.
    uri, options = service.source.opened[0]
    assert options["serverSelectionTimeoutMS"] == 5000
    assert options["connectTimeoutMS"] == 5000 and options["socketTimeoutMS"] == 30000
    assert options["tz_aware"] is True and options["datetime_conversion"] == "DATETIME_AUTO"
    assert options["uuidRepresentation"] == "unspecified"


def test_row_columns_and_payload(db_url, conn, readings, etl):
    oid = readings.insert_one(reading(1, nested={"a": [1, {"b": None}]})).inserted_id
    etl(etl_settings()).run()
    mongo_id, reading_time, source, payload = conn.execute(
        "SELECT mongo_id, reading_time, source_id, payload FROM reading_analytics"
    ).fetchone()
    assert mongo_id == str(oid)
    assert reading_time.isoformat() == "2026-11-20T12:00:01+00:00"
    assert source == "dev-1"
    # The whole document, minus the fields the ETL owns.
    assert payload == {"_id": {"$oid": str(oid)}, "device_id": "dev-1",
                       "time": {"$date": "2026-11-20T12:00:01Z"}, "temperature": 20.1,
                       "nested": {"a": [1, {"b": None}]}}


def test_user_filter_limits_what_is_claimed(db_url, conn, readings, etl):
    readings.insert_many([reading(i, site="north" if i % 2 else "south") for i in range(10)])
    result = etl(etl_settings(ETL_FILTER='{"site": "north"}')).run()
    assert result.loaded == 5
    assert statuses(readings) == {"processed": 5, "ingested": 5}


def test_batch_limit_leaves_the_rest_for_the_next_run(db_url, conn, readings, etl):
    readings.insert_many([reading(i) for i in range(25)])
    settings = etl_settings(ETL_BATCH_SIZE="10", ETL_MAX_BATCHES="2")
    first = etl(settings).run()
    assert (first.claimed, first.more) == (20, True)
    second = etl(settings).run()
    assert (second.claimed, second.more) == (5, False)
    assert count(conn, ROWS) == 25


def test_bad_documents_become_rejects_and_never_block_the_batch(db_url, conn, readings, etl):
    good = [reading(i) for i in range(5)]
    bad = [
        reading(10, time="yesterday"),           # text that is no time
        reading(11, time=True),                  # wrong type
        reading(12, time={"$date": "x"}),        # an object
        reading(13, device_id=[1, 2]),           # source of a wrong type
        reading(14, note="nul\x00inside"),       # PostgreSQL cannot store NUL
        {"_id": "no-time", "status": "ingested"},  # no time and no ObjectId to fall back on
    ]
    readings.insert_many(good[:2] + bad + good[2:])
    result = etl(etl_settings(ETL_BATCH_SIZE="100")).run()

    assert (result.claimed, result.loaded, result.rejected) == (11, 5, 6)
    assert count(conn, ROWS) == 5
    reasons = dict(conn.execute("SELECT mongo_id, reason FROM etl_rejects").fetchall())
    assert reasons['"no-time"'].startswith("no reading time: none of the fields time, timestamp")
    assert len(reasons) == 6
    assert any("'yesterday'" in r for r in reasons.values())
    assert any("field 'note' contains a NUL character" in r for r in reasons.values())
    rejected = list(readings.find({"status": "rejected"}))
    assert len(rejected) == 6
    assert all(d["pgpulse_etl"]["reason"] for d in rejected)
    # The reject keeps the original document (as JSON), NUL made storable.
    doc = conn.execute("SELECT document FROM etl_rejects WHERE reason LIKE '%%NUL%%'").fetchone()[0]
    assert doc["note"] == "nul\ufffdinside"


def test_missing_and_null_fields_fall_back(db_url, conn, readings, etl):
    oid = ObjectId()
    readings.insert_many([
        {"_id": oid, "status": "ingested", "time": None, "device_id": None, "sensor_id": 42},
        {"status": "ingested", "value": 1},  # nothing but an ObjectId
    ])
    result = etl(etl_settings()).run()
    assert (result.loaded, result.rejected) == (2, 0)
    t, source = conn.execute(
        "SELECT reading_time, source_id FROM reading_analytics WHERE mongo_id = %s", (str(oid),)
    ).fetchone()
    assert t == oid.generation_time and source == "42"
    assert count(conn, "SELECT count(*) FROM reading_analytics WHERE source_id IS NULL") == 1


def test_duplicates_across_runs_keep_one_row(db_url, conn, readings, etl):
    settings = etl_settings()
    oid = readings.insert_one(reading(1)).inserted_id
    etl(settings).run()
    before = snapshot(conn)

    # The producer ingests the same document again, unchanged: nothing is rewritten.
    readings.update_one({"_id": oid}, {"$set": {"status": "ingested"}})
    again = etl(settings).run()
    assert (again.claimed, again.inserted, again.updated, again.unchanged) == (1, 0, 0, 1)
    assert snapshot(conn) == before

    # ... and changed: the one row follows the document.
    readings.update_one({"_id": oid}, {"$set": {"status": "ingested", "temperature": 99.5}})
    changed = etl(settings).run()
    assert (changed.inserted, changed.updated) == (0, 1)
    assert count(conn, ROWS) == 1
    payload, run_id = conn.execute("SELECT payload, run_id FROM reading_analytics").fetchone()
    assert payload["temperature"] == 99.5 and str(run_id) == changed.run_id

    # The same content under another _id is another reading.
    readings.insert_one(reading(1))
    etl(settings).run()
    assert count(conn, ROWS) == 2


LEASE_S = 5.0


@pytest.mark.parametrize(
    ("stage", "held", "rows_after_crash"),
    [
        ("claimed", 10, 0),   # batch 1 claimed, nothing loaded
        ("loaded", 20, 10),   # batch 1 committed (not marked), batch 2 already claimed
    ],
)
def test_crash_then_new_run_after_lease_gives_exactly_one_row_per_document(
    db_url, conn, mongo, readings, etl, stage, held, rows_after_crash
):
    """A crash after claiming (before loading) or after the PostgreSQL commit (before
    the MongoDB marks): the next run after the lease takes the claims again."""
    readings.insert_many([reading(i) for i in range(25)])
    # The lease must outlast the second run, which must see the claims still held; on a
    # busy machine that run has taken over a second, so the lease is a generous 5 s.
    settings = etl_settings(ETL_BATCH_SIZE="10", ETL_LEASE_SECONDS=str(LEASE_S), ETL_SERIES="temperature")

    crashing = EtlService(db_url, settings, CrashAt(MockSource(settings, mongo), stage))
    with pytest.raises(Crash):
        crashing.run(max_batches=0)
    assert count(conn, ROWS) == rows_after_crash
    assert statuses(readings) == {"processing": held, "ingested": 25 - held}
    crashed = conn.execute("SELECT id FROM etl_runs WHERE status = 'running'").fetchone()[0]

    # Straight away the claims still hold: the next run takes only the rest, and
    # closes the dead run's record.
    second = etl(settings).run(max_batches=0)
    assert second.claimed == 25 - held
    assert statuses(readings) == {"processing": held, "processed": 25 - held}
    assert conn.execute("SELECT status, error FROM etl_runs WHERE id = %s", (crashed,)).fetchone() == (
        "failed", runs.ABANDONED)

    time.sleep(LEASE_S + 0.2)  # past the lease
    third = etl(settings).run(max_batches=0)
    assert third.claimed == held
    assert (third.inserted, third.unchanged) == (held - rows_after_crash, rows_after_crash)
    assert statuses(readings) == {"processed": 25}
    assert count(conn, ROWS) == count(conn, DISTINCT) == 25
    # Samples too: one per reading, never doubled by the repeat.
    assert count(conn, "SELECT count(*) FROM samples") == 25

    before = snapshot(conn)
    last = etl(settings).run(max_batches=0)
    assert (last.claimed, last.loaded) == (0, 0)
    assert snapshot(conn) == before
    assert count(conn, "SELECT count(*) FROM samples") == 25


class FlakyMongo:
    """A client whose collection loses the server on the n-th update_many call."""

    def __init__(self, client, fail_on: int) -> None:
        self.client, self.fail_on, self.calls = client, fail_on, 0

    def __getitem__(self, name):
        outer = self

        class Db:
            def __getitem__(self, coll):
                real = outer.client[name][coll]

                class Coll:
                    def __getattr__(self, attr):
                        return getattr(real, attr)

                    def update_many(self, *a, **k):
                        outer.calls += 1
                        if outer.calls == outer.fail_on:
                            raise AutoReconnect("connection reset by peer")
                        return real.update_many(*a, **k)

                return Coll()

        return Db()

    def close(self) -> None:
        pass


def test_mongodb_lost_after_commit_fails_the_run_and_the_next_run_completes(
    db_url, conn, readings, mongo, etl
):
    readings.insert_many([reading(i) for i in range(5)])
    settings = etl_settings(ETL_LEASE_SECONDS="0.2")
    # update_many calls: 1 = claim, 2 = mark processed (after the commit).
    flaky = FlakyMongo(mongo, fail_on=2)
    with pytest.raises(SourceUnavailable, match="unreachable: connection reset by peer"):
        etl(settings, flaky).run()
    status, error = conn.execute("SELECT status, error FROM etl_runs").fetchone()
    assert status == "failed" and "connection reset by peer" in error
    assert count(conn, ROWS) == 5
    assert statuses(readings) == {"processing": 5}

    time.sleep(0.3)
    result = etl(settings).run()
    assert (result.claimed, result.unchanged) == (5, 5)
    assert statuses(readings) == {"processed": 5}
    assert count(conn, ROWS) == count(conn, DISTINCT) == 5


def test_unreachable_mongodb_records_a_failed_run_and_writes_nothing(db_url, conn):
    settings = etl_settings(
        MONGO_URI=f"mongodb://etl:s3cret@127.0.0.1:{closed_port()}/?authSource=admin",
        MONGO_SERVER_SELECTION_TIMEOUT_MS="300",
        MONGO_CONNECT_TIMEOUT_MS="300",
    )
    with pytest.raises(SourceUnavailable) as caught:
        EtlService.from_settings(db_url, settings).run()  # the real pymongo.MongoClient
    message = str(caught.value)
    assert "MongoDB at 127.0.0.1" in message and "is unreachable" in message
    assert "s3cret" not in message
    status, error, claimed = conn.execute("SELECT status, error, claimed FROM etl_runs").fetchone()
    assert status == "failed" and error == message and claimed == 0
    assert count(conn, ROWS) == 0
    assert count(conn, "SELECT count(*) FROM etl_rejects") == 0
    # The lock was released: the next run can start (and fails the same way).
    with pytest.raises(SourceUnavailable):
        EtlService.from_settings(db_url, settings).run()


def test_unusable_uri_is_a_clear_error(db_url, conn):
    settings = etl_settings(MONGO_URI="mongodb://user:pw@host:notaport/")
    with pytest.raises(SourceError, match="MONGO_URI cannot be used: Port contains non-digit") as caught:
        EtlService.from_settings(db_url, settings).run()
    assert "pw" not in str(caught.value).replace("port", "")
    assert conn.execute("SELECT status FROM etl_runs").fetchone()[0] == "failed"


def test_second_run_while_one_holds_the_lock_is_refused(db_url, conn, readings, etl):
    readings.insert_one(reading(1))
    holder_id = "8c1f3c8e-6b1f-4f0a-9d67-0f6f1d7c2a11"
    with psycopg.connect(db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext(%s))", (runs.LOCK_NAME,))
        other.execute("INSERT INTO etl_runs (id, trigger) VALUES (%s, 'api')", (holder_id,))
        with pytest.raises(runs.RunInProgress) as caught:
            etl(etl_settings()).run()
        assert caught.value.run_id == holder_id
        assert statuses(readings) == {"ingested": 1}
        assert count(conn, "SELECT count(*) FROM etl_runs") == 1  # no record for the refused run
    # The holder's session ended: its lock went with it.
    result = etl(etl_settings()).run()
    assert result.loaded == 1


def test_list_and_get_runs(db_url, conn, readings, etl):
    readings.insert_one(reading(1))
    first = etl(etl_settings()).run()
    second = etl(etl_settings()).run()
    listed = etl_runs.list_runs(conn)
    assert [r["id"] for r in listed] == [second.run_id, first.run_id]
    assert listed[1]["loaded"] == 1 and listed[1]["duration_s"] >= 0
    assert etl_runs.get_run(conn, first.run_id)["status"] == "succeeded"
    assert etl_runs.list_runs(conn, status="failed") == []


def test_progress_reports_backlog_and_batches(db_url, readings, etl):
    readings.insert_many([reading(i) for i in range(25)])
    seen = []
    etl(etl_settings(ETL_BATCH_SIZE="10")).run(max_batches=0,
             progress=lambda r: seen.append((r.backlog, r.batches, r.claimed)))
    assert seen == [(25, 0, 0), (25, 1, 10), (25, 2, 20), (25, 3, 25)]


class BadBytes:
    """A client whose server returns a document that cannot be decoded (invalid
    UTF-8): any reply that holds it raises InvalidBSON, as pymongo does."""

    def __init__(self, client, bad_key) -> None:
        self.client, self.bad_key = client, bad_key

    def _holds_bad(self, selection) -> bool:
        key = selection.get("_id")
        return key == self.bad_key or (isinstance(key, dict) and self.bad_key in key.get("$in", []))

    def __getitem__(self, name):
        outer = self

        class Db:
            def __getitem__(self, coll):
                real = outer.client[name][coll]

                class Coll:
                    def __getattr__(self, attr):
                        return getattr(real, attr)

                    def find(self, selection=None, projection=None, *a, **k):
                        if projection is None and outer._holds_bad(selection or {}):
                            raise InvalidBSON("'utf-8' codec can't decode byte 0xff in position 3")
                        return real.find(selection, projection, *a, **k)

                    def find_one(self, selection=None, *a, **k):
                        if outer._holds_bad(selection or {}):
                            raise InvalidBSON("'utf-8' codec can't decode byte 0xff in position 3")
                        return real.find_one(selection, *a, **k)

                return Coll()

        return Db()

    def close(self) -> None:
        pass


def test_undecodable_document_is_rejected_alone(db_url, conn, readings, mongo, etl):
    ids = readings.insert_many([reading(i) for i in range(5)]).inserted_ids
    result = etl(etl_settings(), BadBytes(mongo, ids[2])).run()
    assert (result.claimed, result.loaded, result.rejected) == (5, 4, 1)
    mongo_id, reason, document = conn.execute("SELECT mongo_id, reason, document FROM etl_rejects").fetchone()
    assert mongo_id == str(ids[2])
    assert reason.startswith("the document cannot be decoded: 'utf-8' codec can't decode")
    assert document == {"_id": {"$oid": str(ids[2])}}
    assert readings.find_one({"_id": ids[2]})["status"] == "rejected"


def test_odd_bson_types_reach_jsonb_as_documented(db_url, conn, readings, etl):
    u = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
    oid = readings.insert_one({
        "status": "ingested", "time": T_ODD, "device_id": Int64(77),
        "dec": Decimal128("0.1000"), "nan": float("nan"), "inf": float("-inf"), "big": Int64(2**62),
        "uuid": Binary.from_uuid(u), "bin": Binary(b"\x00\xff", 0x80), "far": DatetimeMS(2**60),
        "old": datetime(1900, 1, 1, tzinfo=UTC), "ts": Timestamp(1, 2), "re": Regex("^x", "i"),
        "code": Code("f()"), "ref": DBRef("c", 1), "mk": MinKey(), "Mk": MaxKey(),
        "nested": {"list": [[], {}, [None, {"deep": Decimal128("-1E+3")}]]}, "text": "naïve ☃ \U0001F600",
    }).inserted_id
    result = etl(etl_settings()).run()
    assert (result.loaded, result.rejected) == (1, 0)
    source, payload = conn.execute("SELECT source_id, payload FROM reading_analytics").fetchone()
    assert source == "77"
    assert payload == {
        "_id": {"$oid": str(oid)}, "time": {"$date": "2026-11-20T12:00:00.250Z"}, "device_id": 77,
        "dec": {"$numberDecimal": "0.1000"}, "nan": {"$numberDouble": "NaN"},
        "inf": {"$numberDouble": "-Infinity"}, "big": 2**62, "uuid": {"$uuid": str(u)},
        "bin": {"$binary": {"base64": "AP8=", "subType": "80"}},
        "far": {"$date": {"$numberLong": str(2**60)}},
        "old": {"$date": {"$numberLong": "-2208988800000"}}, "ts": {"$timestamp": {"t": 1, "i": 2}},
        "re": {"$regularExpression": {"pattern": "^x", "options": "i"}}, "code": {"$code": "f()"},
        "ref": {"$ref": "c", "$id": 1}, "mk": {"$minKey": 1}, "Mk": {"$maxKey": 1},
        "nested": {"list": [[], {}, [None, {"deep": {"$numberDecimal": "-1E+3"}}]]},
        "text": "naïve ☃ \U0001F600",
    }
    # Exact in SQL too: the numeric text and the 62-bit integer.
    assert conn.execute(
        "SELECT (payload->'dec'->>'$numberDecimal')::numeric, (payload->>'big')::numeric FROM reading_analytics"
    ).fetchone() == (Decimal("0.1000"), Decimal(2**62))


def nested(depth: int) -> dict:
    top: dict = {}
    inner = top
    for _ in range(depth):
        inner["a"] = {}
        inner = inner["a"]
    return top


class Splicing:
    """A source that hands a run, between the documents it claims, documents that
    mongomock cannot hold but a driver can hand over (its decoders are lenient)."""

    def __init__(self, source, extra: list[dict]) -> None:
        self.source, self.extra = source, extra

    def __getattr__(self, name):
        return getattr(self.source, name)

    def claim(self, *args, **kwargs):
        documents = self.source.claim(*args, **kwargs)
        if documents and self.extra:
            spliced = []
            for document in documents:
                spliced.append(document)
                if self.extra:
                    spliced.append(self.extra.pop(0))
            return spliced
        return documents


def test_any_error_in_a_document_makes_it_a_reject_and_the_good_ones_load(db_url, conn, readings, mongo):
    """Whatever a transform meets in one document (dates past the calendar's edge, too
    deep nesting, keys that are not UTF-8, values of no BSON type the ETL maps), that
    document becomes a reject with the reason, and the others load."""
    readings.insert_many([reading(i) for i in range(8)] + [
        {"_id": "late", "status": "ingested", "time": "9999-12-31T23:59:59-14:00"},
        {"_id": "early", "status": "ingested", "time": "0001-01-01T00:00:00+14:00"},
    ])
    hostile = [
        reading(20, _id="deep", nest=nested(3000)),                  # RecursionError
        reading(21, _id="deeper-than-json", nest=nested(300)),       # orjson's nesting limit
        reading(22, _id="bad-key", **{"caf\udce9": 1}),              # a key that is not UTF-8
        reading(23, _id="snan", time=Decimal128("sNaN")),            # ValueError from decimal
        reading(24, _id="no-bson-type", tags={"a", "b"}),            # a type with no mapping
    ]
    settings = etl_settings(ETL_BATCH_SIZE="100")
    result = EtlService(db_url, settings, Splicing(MockSource(settings, mongo), hostile)).run()

    assert (result.status, result.claimed, result.loaded, result.rejected) == ("succeeded", 15, 8, 7)
    assert count(conn, ROWS) == 8
    reasons = dict(conn.execute("SELECT mongo_id, reason FROM etl_rejects").fetchall())
    assert reasons['"late"'] == (
        "field 'time' is '9999-12-31T23:59:59-14:00', outside the years 1..9999 in UTC")
    assert reasons['"early"'] == (
        "field 'time' is '0001-01-01T00:00:00+14:00', outside the years 1..9999 in UTC")
    assert reasons['"deep"'].startswith("the document cannot be transformed: RecursionError: ")
    assert reasons['"deeper-than-json"'] == "field 'nest' is nested more than 254 levels deep"
    assert reasons['"bad-key"'] == "field 'caf\\udce9' is not valid UTF-8 text"
    assert reasons['"snan"'] == (
        "the document cannot be transformed: ValueError: cannot convert signaling NaN to float")
    assert reasons['"no-bson-type"'] == "field 'tags' has a value of type set that has no JSON form"
    # The document of each reject is kept as far as it can be stored.
    deep = conn.execute("SELECT document FROM etl_rejects WHERE mongo_id = '\"deep\"'").fetchone()[0]
    assert deep == {"_id": "deep", "$unrepresentable": "the document is nested too deeply to store"}
    assert statuses(readings) == {"processed": 8, "rejected": 2}


def test_ids_that_differ_only_in_bson_type_are_two_documents(db_url, conn, readings, etl):
    readings.insert_many([reading(1, _id=7), reading(2, _id="7")])
    oid = readings.insert_one(reading(3)).inserted_id
    readings.insert_one(reading(4, _id=str(oid)))  # a string that reads like the ObjectId
    result = etl(etl_settings()).run()
    assert (result.loaded, result.rejected) == (4, 0)
    rows = dict(conn.execute("SELECT mongo_id, payload FROM reading_analytics").fetchall())
    assert set(rows) == {"7", '"7"', str(oid), f'"{oid}"'}
    assert rows["7"]["_id"] == 7 and rows["7"]["temperature"] == 20.1
    assert rows['"7"']["_id"] == "7" and rows['"7"']["temperature"] == 20.2
    # Loading them again changes nothing: each document keeps its own row.
    readings.update_many({}, {"$set": {"status": "ingested"}})
    again = etl(etl_settings()).run()
    assert (again.unchanged, count(conn, ROWS)) == (4, 4)


def test_the_database_named_in_the_uri_is_read(db_url, conn, mongo, etl):
    mongo["plant"]["readings"].insert_many([reading(i) for i in range(3)])
    result = etl(etl_settings(MONGO_URI="mongodb://mongo.test:27017/plant")).run()
    assert (result.loaded, result.warning) == (3, None)
    assert result.read_from == "mongo.test:27017/plant.readings"
    # MONGO_DATABASE, when set, wins over the URI's.
    other = etl(etl_settings(MONGO_URI="mongodb://mongo.test:27017/plant", MONGO_DATABASE="pgpulse")).run()
    assert other.read_from == "mongo.test:27017/pgpulse.readings"


def test_a_run_that_finds_the_collection_missing_or_empty_says_which_it_read(db_url, conn, mongo, etl):
    missing = etl(etl_settings(MONGO_URI="mongodb://mongo.test:27017/plant")).run()
    assert missing.status == "succeeded"
    assert missing.warning == ("the collection 'readings' in database 'plant' at mongo.test:27017 "
                               "does not exist")
    mongo["plant"].create_collection("readings")
    empty = etl(etl_settings(MONGO_URI="mongodb://mongo.test:27017/plant")).run()
    assert empty.warning == "the collection 'readings' in database 'plant' at mongo.test:27017 is empty"
    assert empty.as_dict()["warning"] == empty.warning
    record = etl_runs.get_run(conn, empty.run_id)
    assert (record["warning"], record["read_from"]) == (empty.warning, "mongo.test:27017/plant.readings")
    # A collection that holds documents, none of them to load: no warning.
    mongo["plant"]["readings"].insert_one({"status": "processed"})
    assert etl(etl_settings(MONGO_URI="mongodb://mongo.test:27017/plant")).run().warning is None
