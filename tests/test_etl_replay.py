"""Rejects: listed with their reasons, replayed after the cause is fixed, closed
when their document goes through.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines),
read through the production MongoSource (etl_helpers.MockSource); a crash comes from
a wrapping source (CrashAt). PostgreSQL is the real server.
"""

from __future__ import annotations

import time

import pytest
from etl_helpers import Crash, CrashAt, MockSource, count, etl_settings, reading, statuses

from etl import replay
from etl.service import EtlService
from pgpulse.store.etl_runs import list_rejects

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, etl


def open_rejects(conn) -> list[tuple]:
    return conn.execute(
        "SELECT id, mongo_id, reason FROM etl_rejects WHERE replayed_at IS NULL ORDER BY id"
    ).fetchall()


@pytest.fixture
def rejected(db_url, conn, readings, etl):
    """Three good readings and two rejected ones (a bad time, a bad source)."""
    readings.insert_many([reading(i) for i in range(3)])
    bad_time = readings.insert_one(reading(10, time="later")).inserted_id
    bad_source = readings.insert_one(reading(11, device_id={"serial": 9})).inserted_id
    result = etl(etl_settings()).run()
    assert (result.loaded, result.rejected) == (3, 2)
    ids = {mongo_id: reject_id for reject_id, mongo_id, _ in open_rejects(conn)}
    return ids[str(bad_time)], ids[str(bad_source)], bad_time, bad_source


def test_list_rejects_with_reasons_and_documents(db_url, conn, rejected):
    time_reject, source_reject, bad_time, _ = rejected
    rows = list_rejects(conn)
    assert {r["id"] for r in rows} == {time_reject, source_reject}
    by_id = {r["id"]: r for r in rows}
    assert by_id[time_reject]["reason"] == "field 'time' is text that is not an RFC 3339 time: 'later'"
    assert by_id[time_reject]["document"]["_id"] == {"$oid": str(bad_time)}
    assert by_id[time_reject]["source_id"] == "dev-1"
    assert by_id[source_reject]["source_id"] is None


def test_replay_after_fixing_the_document(db_url, conn, readings, etl, rejected):
    time_reject, source_reject, bad_time, bad_source = rejected
    readings.update_one({"_id": bad_time}, {"$set": {"time": "2026-11-20T12:00:10Z"}})

    result = etl(etl_settings()).replay(ids=[time_reject, source_reject])

    assert result.run.trigger == "replay"
    assert (result.run.claimed, result.run.loaded, result.run.rejected) == (2, 1, 1)
    outcomes = {o["id"]: o for o in result.outcomes}
    assert outcomes[time_reject]["outcome"] == "loaded"
    assert outcomes[source_reject]["outcome"] == "rejected"
    assert "field 'device_id' is an object" in outcomes[source_reject]["reason"]
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 4
    # One open reject left (the same row, updated), the fixed one closed.
    assert [r[0] for r in open_rejects(conn)] == [source_reject]
    assert readings.find_one({"_id": bad_time})["status"] == "processed"
    assert readings.find_one({"_id": bad_source})["status"] == "rejected"


def test_replay_after_fixing_the_settings(db_url, conn, readings, etl, rejected):
    _, source_reject, _, bad_source = rejected
    # The source really is in device.serial: point the settings there and replay all.
    settings = etl_settings(ETL_SOURCE_FIELDS="device_id.serial,device_id")
    result = etl(settings).replay(all_open=True)
    assert {o["outcome"] for o in result.outcomes} == {"loaded", "rejected"}
    source = conn.execute(
        "SELECT source_id FROM reading_analytics WHERE mongo_id = %s", (str(bad_source),)
    ).fetchone()[0]
    assert source == "9"


def test_reject_closes_when_the_producer_reingests_a_fixed_document(db_url, conn, readings, etl, rejected):
    time_reject, _, bad_time, _ = rejected
    readings.update_one({"_id": bad_time}, {"$set": {"time": "2026-11-20T12:00:10Z", "status": "ingested"}})
    etl(etl_settings()).run()
    closed = conn.execute("SELECT replayed_at IS NOT NULL FROM etl_rejects WHERE id = %s", (time_reject,))
    assert closed.fetchone()[0] is True


def test_replay_reports_what_it_could_not_do(db_url, conn, readings, etl, rejected):
    time_reject, source_reject, bad_time, bad_source = rejected
    readings.delete_one({"_id": bad_time})
    readings.update_one({"_id": bad_source}, {"$set": {"status": "processed"}})  # handled elsewhere
    result = etl(etl_settings()).replay(ids=[time_reject, source_reject, 999_999])
    assert [o["outcome"] for o in result.outcomes] == ["missing", "not rejected in MongoDB", "unknown"]
    assert result.outcomes[1]["status"] == "processed"
    assert result.run.claimed == 0
    assert len(open_rejects(conn)) == 2  # nothing closed that did not go through


def test_replay_needs_open_rejects(db_url, conn, readings, etl, rejected):
    with pytest.raises(replay.ReplayError, match="name the rejects"):
        etl(etl_settings()).replay()
    with pytest.raises(replay.ReplayError, match="none of the named rejects is open"):
        etl(etl_settings()).replay(ids=[424242])


def test_rejects_are_not_duplicated_when_a_run_repeats(db_url, conn, mongo, readings, etl):
    """A crash after the commit repeats the batch: the open reject is updated, not doubled."""
    readings.insert_one(reading(1, time="never"))
    settings = etl_settings(ETL_LEASE_SECONDS="0.2")
    with pytest.raises(Crash):
        EtlService(db_url, settings, CrashAt(MockSource(settings, mongo), "loaded")).run()
    time.sleep(0.3)  # past the lease
    etl(settings).run()
    assert count(conn, "SELECT count(*) FROM etl_rejects") == 1
    assert statuses(readings) == {"rejected": 1}


def test_replay_keeps_the_bson_type_of_the_id(db_url, conn, readings, etl):
    """A reject of {_id: 7} is not closed by loading {_id: "7"}, and its replay loads
    the number's document as a row of its own."""
    readings.insert_many([reading(1, _id=7, time="later"), reading(2, _id="7")])
    first = etl(etl_settings()).run()
    assert (first.loaded, first.rejected) == (1, 1)
    assert [(m, r.split(":")[0]) for _, m, r in open_rejects(conn)] == [("7", "field 'time' is text that is not an RFC 3339 time")]

    readings.update_one({"_id": 7}, {"$set": {"time": "2026-11-20T12:00:10Z"}})
    result = etl(etl_settings()).replay(all_open=True)
    assert [(o["mongo_id"], o["outcome"]) for o in result.outcomes] == [("7", "loaded")]
    rows = dict(conn.execute("SELECT mongo_id, payload->'_id' FROM reading_analytics").fetchall())
    assert rows == {"7": 7, '"7"': "7"}
    assert open_rejects(conn) == []
    assert readings.find_one({"_id": 7})["status"] == "processed"
    assert readings.find_one({"_id": "7"})["status"] == "processed"
