"""ETL settings: defaults, parsing, and bad values named in one clear error.

No database and no MongoDB.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from etl.settings import EtlSettings, load_etl
from pgpulse import config
from pgpulse.config import SettingsError


def test_defaults():
    s = load_etl({})
    assert not s.configured
    assert (s.database, s.collection, s.batch_size, s.lease_s) == (None, "readings", 1000, 300.0)
    assert s.mongo_database == "pgpulse"
    assert (s.server_selection_timeout_ms, s.connect_timeout_ms, s.socket_timeout_ms) == (5000, 5000, 30000)
    assert s.time_fields[0] == "time" and s.source_fields[0] == "source_id"
    assert s.mongo_filter == {} and s.series == () and s.interval_minutes == 5


@pytest.mark.parametrize(
    ("env", "database"),
    [
        ({"MONGO_URI": "mongodb://db:27017/plant"}, "plant"),
        ({"MONGO_URI": "mongodb://etl:pw@db1,db2/plant?authSource=admin&replicaSet=rs"}, "plant"),
        ({"MONGO_URI": "mongodb+srv://etl:pw@cluster.example.com/plant?retryWrites=true"}, "plant"),
        ({"MONGO_URI": "mongodb://db:27017/"}, "pgpulse"),
        ({"MONGO_URI": "mongodb://db:27017/?authSource=plant"}, "pgpulse"),
        ({"MONGO_URI": "mongodb://db:27017/plant", "MONGO_DATABASE": "other"}, "other"),
        ({"MONGO_URI": "mongodb://db:27017/plant", "MONGO_DATABASE": ""}, "plant"),
    ],
)
def test_database_from_the_uri_unless_mongo_database_is_set(env, database):
    assert load_etl(env).mongo_database == database


def test_uri_from_file_and_not_both(tmp_path):
    secret = tmp_path / "uri"
    secret.write_text("mongodb://etl:pw@db:27017/\n")
    assert load_etl({"MONGO_URI_FILE": str(secret)}).mongo_uri == "mongodb://etl:pw@db:27017/"
    with pytest.raises(SettingsError, match="MONGO_URI and MONGO_URI_FILE are both set"):
        load_etl({"MONGO_URI_FILE": str(secret), "MONGO_URI": "mongodb://x"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MONGO_URI": "http://db"}, "MONGO_URI: expected a URL starting with mongodb:// or mongodb+srv://"),
        ({"ETL_BATCH_SIZE": "0"}, "ETL_BATCH_SIZE='0': must be >= 1"),
        ({"ETL_BATCH_SIZE": "many"}, "ETL_BATCH_SIZE='many': expected an integer"),
        ({"ETL_LEASE_SECONDS": "0"}, "ETL_LEASE_SECONDS='0': must be > 0"),
        ({"ETL_INTERVAL_MINUTES": "-1"}, "ETL_INTERVAL_MINUTES='-1': must be >= 0"),
        ({"ETL_FILTER": "{bad"}, "ETL_FILTER: not valid JSON"),
        ({"ETL_FILTER": "[1]"}, "ETL_FILTER: expected a JSON object"),
        ({"ETL_FILTER": '{"status": "x"}'}, "ETL_FILTER: the filter may not use status or pgpulse_etl"),
        ({"ETL_FILTER": '{"$or": [{"pgpulse_etl.run_id": 1}]}'}, "may not use status or pgpulse_etl"),
        ({"ETL_TIME_FIELDS": "time,,$x"}, "ETL_TIME_FIELDS='time,,$x': '$x' is not a field path"),
        ({"ETL_SOURCE_FIELDS": "a..b"}, "'a..b' is not a field path"),
        ({"ETL_SERIES": "t=bad-name"}, "'bad-name' is not a metric name"),
        ({"ETL_SERIES": "a=m,b=m"}, "two fields map to the same metric name"),
        ({"ETL_SERIES_LABELS": "source=site"}, "'source' cannot be a label name"),
        ({"MONGO_DATABASE": "a.b"}, "MONGO_DATABASE='a.b': not a valid database name"),
        ({"MONGO_COLLECTION": "system.users"}, "MONGO_COLLECTION='system.users': not a valid collection name"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError) as caught:
        load_etl(env)
    assert message in str(caught.value)


def test_filter_takes_extended_json():
    oid = ObjectId()
    s = load_etl({"ETL_FILTER": f'{{"site": "north", "batch": {{"$oid": "{oid}"}}}}'})
    assert s.mongo_filter == {"site": "north", "batch": oid}
    s.mongo_filter["site"] = "changed"  # a copy each time: settings stay as loaded
    assert s.mongo_filter["site"] == "north"


def test_series_and_label_maps():
    s = load_etl({"ETL_SERIES": "temperature, env.pressure=pressure_hpa",
                  "ETL_SERIES_LABELS": "site,unit=meta.unit"})
    assert tuple(s.series) == (("temperature", "reading_temperature"), ("env.pressure", "pressure_hpa"))
    assert tuple(s.series_labels) == (("site", "site"), ("meta.unit", "unit"))
    assert str(s.series) == "temperature=reading_temperature,env.pressure=pressure_hpa"
    assert str(s.series_labels) == "site=site,unit=meta.unit"


def test_typed_values_pass_through():
    s = load_etl({"MONGO_URI": "mongodb://h", "ETL_BATCH_SIZE": 7, "ETL_LEASE_SECONDS": 0.5})
    assert (s.batch_size, s.lease_s) == (7, 0.5)


def test_described_defaults_read_back_as_the_defaults():
    # What .env.example and docs/configuration.md show must load as the defaults.
    env = {row["env"]: row["default"] for row in config.describe(EtlSettings)}
    assert load_etl(env) == load_etl({})
