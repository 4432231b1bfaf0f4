"""The ETL against a real MongoDB server: set MONGO_TEST_URI (e.g.
mongodb://localhost:27017) to run it; without it the module is skipped, since
MongoDB cannot be installed on the machines the rest of the suite runs on (there
the source is mongomock). The collection is made for the test and dropped after.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from bson import Decimal128, Int64
from bson.binary import Binary
from etl_helpers import Crash, CrashAt, count, statuses

from etl.service import EtlService
from etl.settings import load_etl
from etl.source import MongoSource

MONGO_TEST_URI = os.environ.get("MONGO_TEST_URI")
pytestmark = pytest.mark.skipif(not MONGO_TEST_URI, reason="MONGO_TEST_URI is not set: no real MongoDB to test against")

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def collection():
    client = pymongo.MongoClient(MONGO_TEST_URI, serverSelectionTimeoutMS=5000, tz_aware=True)
    name = f"readings_{uuid.uuid4().hex[:12]}"
    coll = client["pgpulse_test"][name]
    yield coll
    coll.drop()
    client.close()


def settings_for(coll, **env: str):
    return load_etl({"MONGO_URI": MONGO_TEST_URI, "MONGO_DATABASE": coll.database.name,
                     "MONGO_COLLECTION": coll.name, **env})


def test_real_server_end_to_end_with_a_crash(db_url, conn, collection):
    docs = [
        {"status": "ingested", "device_id": f"d{i % 4}", "time": T0 + timedelta(seconds=i),
         "value": Decimal128(f"{i}.50"), "count": Int64(i), "tag": Binary.from_uuid(uuid.UUID(int=i))}
        for i in range(50)
    ]
    docs.append({"status": "ingested", "time": "not a time"})
    collection.insert_many(docs)
    settings = settings_for(collection, ETL_BATCH_SIZE="20", ETL_LEASE_SECONDS="0.5")

    with pytest.raises(Crash):
        EtlService(db_url, settings, CrashAt(MongoSource(settings), "loaded")).run(max_batches=0)
    time.sleep(0.7)
    etl = EtlService.from_settings(db_url, settings)
    result = etl.run(max_batches=0)
    assert result.claimed == 51 and result.rejected == 1
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 50
    assert count(conn, "SELECT count(DISTINCT mongo_id) FROM reading_analytics") == 50
    assert statuses(collection) == {"processed": 50, "rejected": 1}
    payload = conn.execute(
        "SELECT payload FROM reading_analytics WHERE reading_time = %s", (T0 + timedelta(seconds=3),)
    ).fetchone()[0]
    assert payload["value"] == {"$numberDecimal": "3.50"} and payload["count"] == 3
    assert payload["tag"] == {"$uuid": str(uuid.UUID(int=3))}
    assert etl.run().claimed == 0
    etl.close()
