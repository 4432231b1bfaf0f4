"""The ETL's samples go through the store: series limits and label rules hold for the
ETL as for ingest, a refused document becomes a reject and loads no reading, and
only readings a transaction inserted get samples (real PostgreSQL)."""

from __future__ import annotations

import psycopg
from etl_helpers import count, etl_settings, reading

from etl import load
from etl.transform import Transformer
from pgpulse.store.series import SeriesLimits


def documents(n: int, **fields) -> list[dict]:
    return [{"_id": f"r{i}", **reading(i, **fields)} for i in range(n)]


RUN_ID = "00000000-0000-0000-0000-000000000000"


def load_batch(db_url: str, docs: list[dict], limits: SeriesLimits, **env: str):
    transformer = Transformer(etl_settings(ETL_SERIES="temperature", **env))
    batch = transformer.batch(docs)
    with psycopg.connect(db_url, autocommit=True) as c:
        # The run the batch belongs to (rejects name it).
        c.execute("INSERT INTO etl_runs (id, trigger, status) VALUES (%s, 'cli', 'running') "
                  "ON CONFLICT DO NOTHING", (RUN_ID,))
        load.prepare(c)
        with c.transaction():
            result = load.write(c, batch, RUN_ID, limits)
    return batch, result


def test_series_limit_rejects_the_documents_past_it(conn, db_url):
    # Three sources (dev-0, dev-1, dev-2) make three series; the limit allows two.
    batch, result = load_batch(db_url, documents(6), SeriesLimits(max_series=2,
                                                                   max_series_per_metric=2))
    assert count(conn, "SELECT count(*) FROM series") == 2
    refused = sorted(r.mongo_id for r in batch.rejects)
    # String _ids are stored as their JSON text (they keep their BSON type).
    assert refused == ['"r2"', '"r5"']  # the documents of dev-2, the third series
    assert all("series limit" in r.reason and r.reason.startswith("ETL_SERIES: ")
               for r in batch.rejects)
    assert sorted(row.mongo_id for row in batch.rows) == ['"r0"', '"r1"', '"r3"', '"r4"']
    assert (result.inserted, result.samples, result.rejects) == (4, 4, 2)
    assert count(conn, "SELECT count(*) FROM reading_analytics") == 4
    assert count(conn, 'SELECT count(*) FROM reading_analytics WHERE mongo_id IN (\'"r2"\', \'"r5"\')') == 0
    assert count(conn, 'SELECT count(*) FROM etl_rejects WHERE mongo_id IN (\'"r2"\', \'"r5"\')') == 2
    assert count(conn, "SELECT count(*) FROM samples") == 4


def test_label_rules_of_the_store_hold(conn, db_url):
    docs = documents(2)
    docs[1]["site"] = "x" * 20
    batch, result = load_batch(db_url, docs, SeriesLimits(max_label_value_len=10),
                               ETL_SERIES_LABELS="site")
    assert [r.mongo_id for r in batch.rejects] == ['"r1"']
    assert "value longer than 10 characters" in batch.rejects[0].reason
    assert (result.inserted, result.samples) == (1, 1)
    assert count(conn, "SELECT count(*) FROM series") == 1


def test_samples_only_for_inserted_readings(conn, db_url):
    docs = documents(3)
    _, first = load_batch(db_url, docs, SeriesLimits())
    docs[0]["temperature"] = 99.0  # changed: updated, not inserted
    _, again = load_batch(db_url, docs, SeriesLimits())
    assert (first.inserted, first.samples) == (3, 3)
    assert (again.inserted, again.updated, again.unchanged, again.samples) == (0, 1, 2, 0)
    assert count(conn, "SELECT count(*) FROM samples") == 3
