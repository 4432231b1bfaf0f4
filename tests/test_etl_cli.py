"""``pgpulse etl run|runs|rejects|replay`` against the real PostgreSQL of the suite.

The MongoDB side is mongomock (MongoDB cannot be installed on the test machines):
the ``mocked_mongo`` fixture makes the production MongoSource that the commands
build open mongomock's client instead of pymongo's; failure paths run through
``pgpulse`` itself with the real pymongo driver.
"""

from __future__ import annotations

import json

import pytest
from etl_helpers import MONGO_URI, closed_port, count, reading, statuses

from pgpulse import cli

pytest_plugins = ["etl_fixtures"]  # fixtures: mongo, readings, mocked_mongo


@pytest.fixture
def env(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("MONGO_URI", MONGO_URI)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return db_url


def etl(argv: list[str]) -> int:
    args = cli.build_parser().parse_args(["etl", *argv])
    return args.func(args)


def test_run_drains_the_backlog_with_progress(env, conn, readings, mocked_mongo, capsys, monkeypatch):
    monkeypatch.setenv("ETL_BATCH_SIZE", "40")
    monkeypatch.setenv("ETL_MAX_BATCHES", "1")  # the API's limit; the CLI goes on regardless
    readings.insert_many([reading(i) for i in range(100)] + [reading(200, time=[])])
    assert etl(["run"]) == 0
    out = capsys.readouterr()
    assert "101 claimed, 100 loaded (100 new, 0 changed), 1 rejected" in out.out
    lines = out.err.strip().splitlines()
    assert lines[0] == "etl: batch 0: 0/101 (0%) claimed, 0 loaded, 0 rejected, 0 docs/s"
    assert lines[-1].startswith("etl: batch 3: 101/101 (100%) claimed, 100 loaded, 1 rejected")
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 100
    assert statuses(readings) == {"processed": 100, "rejected": 1}


def test_run_json_and_quiet(env, readings, mocked_mongo, capsys):
    readings.insert_one(reading(1))
    assert etl(["run", "--json", "--quiet"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["loaded"] == 1 and out.err == ""


def test_runs_rejects_and_replay(env, readings, mocked_mongo, capsys):
    bad = readings.insert_one(reading(1, time="later")).inserted_id
    etl(["run", "--quiet"])
    capsys.readouterr()

    assert etl(["runs"]) == 0
    assert "succeeded cli" in capsys.readouterr().out

    assert etl(["rejects"]) == 0
    listing = capsys.readouterr().out
    assert str(bad) in listing and "[open]" in listing and "not an RFC 3339 time" in listing
    reject_id = int(listing.split()[0])

    readings.update_one({"_id": bad}, {"$set": {"time": "2026-11-20T12:00:00Z"}})
    assert etl(["replay", str(reject_id)]) == 0
    out = capsys.readouterr()
    assert f"{reject_id:>6}  {bad}  loaded" in out.out
    assert "1 loaded, 0 rejected again" in out.err

    assert etl(["rejects"]) == 0
    assert "no open rejects" in capsys.readouterr().err
    assert etl(["rejects", "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["replayed_at"] is not None


def test_replay_needs_ids(env, capsys):
    assert cli.main(["etl", "replay"]) == 2
    assert "name reject ids to replay, or --all" in capsys.readouterr().err


def test_missing_uri_is_a_configuration_error(env, monkeypatch, capsys):
    monkeypatch.delenv("MONGO_URI")
    assert cli.main(["etl", "run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "pgpulse: configuration error: MONGO_URI is not set (nor MONGO_URI_FILE): the ETL has no source")


def test_unreachable_mongodb_is_a_clear_failure(env, monkeypatch, conn, capsys):
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{closed_port()}/")
    monkeypatch.setenv("MONGO_SERVER_SELECTION_TIMEOUT_MS", "300")
    assert cli.main(["etl", "run", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pgpulse: ETL run failed: MongoDB at 127.0.0.1:") and "is unreachable" in err
    assert conn.execute("SELECT status FROM etl_runs").fetchone()[0] == "failed"


def test_a_run_that_reads_nothing_says_which_collection(env, monkeypatch, mocked_mongo, capsys, caplog):
    monkeypatch.setenv("MONGO_URI", "mongodb://mongo.test:27017/plant")
    assert etl(["run", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "0 claimed" in out.out
    said = "the collection 'readings' in database 'plant' at mongo.test:27017 does not exist"
    assert f"warning: {said}" in out.err
    assert said in caplog.text
