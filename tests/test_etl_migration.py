"""Migration 0004_etl_typed_ids: rows loaded before it keep meaning the same
documents, in the typed key form the ETL now writes (real PostgreSQL, migrated
step by step)."""

from __future__ import annotations

import psycopg
from bson import ObjectId
from psycopg import sql

from etl.transform import mongo_id_text
from pgpulse import schema

OID = ObjectId("6566c0ffee0000000000abcd")
# (old mongo_id, the stored _id) as the ETL wrote them before 0004.
OLD = [
    (str(OID), {"$oid": str(OID)}),
    ("sensor-1", "sensor-1"),
    ('say "hi"\n', 'say "hi"\n'),
    ("7", 7),
    ("7.5", 7.5),
    ('{"site":"n","seq":1}', {"site": "n", "seq": 1}),
]
NEW = [str(OID), '"sensor-1"', mongo_id_text('say "hi"\n'), "7", "7.5", '{"site":"n","seq":1}']


def test_existing_keys_take_the_typed_form_and_back(empty_db_url):
    schema.upgrade(empty_db_url, "auto", "0002_etl_rejects")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for mongo_id, key in OLD:
            payload = psycopg.types.json.Jsonb({"_id": key, "v": 1})
            conn.execute(
                "INSERT INTO reading_analytics (mongo_id, reading_time, payload) VALUES (%s, now(), %s)",
                (mongo_id, payload),
            )
            conn.execute(
                "INSERT INTO etl_rejects (mongo_id, reason, document) VALUES (%s, 'bad', %s)",
                (mongo_id, payload),
            )
    schema.upgrade(empty_db_url, "auto", "0004_etl_typed_ids")
    with psycopg.connect(empty_db_url) as conn:
        for table in ("reading_analytics", "etl_rejects"):
            query = sql.SQL("SELECT mongo_id FROM {} ORDER BY id").format(sql.Identifier(table))
            keys = [r[0] for r in conn.execute(query)]
            assert keys == NEW, table
        # The string "7" can now load beside the number 7.
        conn.execute("INSERT INTO reading_analytics (mongo_id, reading_time, payload) "
                     "VALUES ('\"7\"', now(), '{\"_id\": \"7\"}')")
        conn.execute("DELETE FROM reading_analytics WHERE mongo_id = '\"7\"'")
        conn.commit()
        assert {"read_from", "warning"} <= {
            r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'etl_runs'::regclass AND attnum > 0")}
    schema.downgrade(empty_db_url, "0002_etl_rejects")
    with psycopg.connect(empty_db_url) as conn:
        keys = [r[0] for r in conn.execute("SELECT mongo_id FROM reading_analytics ORDER BY id")]
        assert keys == [m for m, _ in OLD]
