"""The timescale engine's DDL and policies, on TimescaleDB 2.23.

Runs on PGlite with TimescaleDB (``tests/pglite_runner.py``), a stand-in for a
real TimescaleDB server, which cannot be installed on these machines; the full
Docker stack runs the real one. PGlite has no background workers, so policies are
run by hand with ``run_job`` and aggregates refreshed with
``refresh_continuous_aggregate``.

The whole scenario is one PGlite run (one start-up, one DDL application); each
test checks the results of some of its steps.
"""

from __future__ import annotations

from typing import Any

import pytest
from pglite_runner import PAUSE_JOBS, PGliteRunner, Step, exec_, query, run_on_server

from pgpulse import schema

# Short, so that the data set (five days) reaches past it: the refresh windows start
# a day inside it, and raw chunks older than three days are dropped below.
RAW_KEEP_DAYS = 4

# (reader relation, relation it is aggregated from)
TIERS = {
    "samples_5m": "samples",
    "system_metrics_5m": "system_metrics",
    "samples_1h": "samples_5m",
    "system_metrics_1h": "system_metrics_5m",
}

CONFIGURE = "SELECT pgpulse_configure($1::interval, $2::interval, $3::interval, $4::interval, $5::interval)"
DEFAULTS = (f"{RAW_KEEP_DAYS} days", "90 days", "365 days", "1 hour", "3 days")

JOBS = """
SELECT j.job_id, j.proc_name, j.hypertable_name, j.scheduled,
       extract(epoch FROM j.schedule_interval)::bigint AS schedule_s,
       extract(epoch FROM (j.config->>'start_offset')::interval)::bigint AS start_offset_s,
       extract(epoch FROM (j.config->>'end_offset')::interval)::bigint AS end_offset_s,
       extract(epoch FROM (j.config->>'drop_after')::interval)::bigint AS drop_after_s,
       extract(epoch FROM (j.config->>'compress_after')::interval)::bigint AS compress_after_s
FROM timescaledb_information.jobs j
WHERE j.proc_name LIKE 'policy_%' AND j.hypertable_name IS NOT NULL
ORDER BY j.hypertable_name, j.proc_name
"""

# Helpers living in pg_temp for the run: an error as a value, a cagg's materialized
# rows (what a refresh keeps or deletes, without the real-time part), a policy run.
HELPERS = """
CREATE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN SQLERRM;
END $$;

CREATE FUNCTION pg_temp.materialized_rows(cagg text, before timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    mat text;
    n bigint;
BEGIN
    SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
    INTO STRICT mat
    FROM timescaledb_information.continuous_aggregates WHERE view_name = cagg;
    EXECUTE format('SELECT count(*) FROM %s WHERE bucket < $1', mat) INTO n USING before;
    RETURN n;
END $$;

CREATE FUNCTION pg_temp.job_of(proc text, rel text) RETURNS integer LANGUAGE sql AS $$
    SELECT job_id FROM timescaledb_information.jobs
    WHERE proc_name = proc AND hypertable_name = rel
$$;
"""

# Five days of one series (1 min) and one host (5 min) up to now; raw chunks are a day.
DATA = """
INSERT INTO series (name, labels) VALUES ('disk_temp', '{"host": "alpha"}');
INSERT INTO samples (time, series_id, value)
SELECT t, 1, extract(epoch FROM t)::bigint % 1000
FROM generate_series(date_trunc('day', now()) - INTERVAL '5 days', now(), INTERVAL '1 minute') t;
INSERT INTO system_metrics (time, host, data)
SELECT t, 'alpha', jsonb_build_object('cpu', jsonb_build_object('percent', extract(minute FROM t)))
FROM generate_series(date_trunc('day', now()) - INTERVAL '5 days', now(), INTERVAL '5 minutes') t;
"""

HORIZON = "date_trunc('day', now()) - INTERVAL '3 days'"
# Where the raw data left after dropping chunks before HORIZON begins (chunks are a
# seventh of the raw retention, so one of them straddles HORIZON).
OLDEST_RAW = ("(SELECT min(range_start) FROM timescaledb_information.chunks "
              "WHERE hypertable_name = 'samples')")


def _scenario() -> list[tuple[str, Step]]:
    return [
        ("ddl", exec_(schema.offline_sql("timescale"))),
        ("extension", query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")),
        ("alembic", query("SELECT version_num FROM alembic_version")),
        ("engine", query("SELECT value FROM pgpulse_meta WHERE key = 'engine'")),
        ("hypertables", query(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "ORDER BY 1")),
        ("caggs", query(
            "SELECT view_name, hypertable_name, materialization_hypertable_name, materialized_only "
            "FROM timescaledb_information.continuous_aggregates ORDER BY view_name")),
        ("tier_columns", query(
            "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position) AS columns "
            "FROM information_schema.columns WHERE table_name IN ('samples_5m', 'samples_1h') "
            "GROUP BY 1 ORDER BY 1")),
        ("grants", query(
            "SELECT has_table_privilege('pgpulse_reader', 'samples_1h', 'SELECT') AS reader_tiers, "
            "has_table_privilege('pgpulse_reader', 'api_keys', 'SELECT') AS reader_keys, "
            "has_table_privilege('pgpulse_writer', 'samples', 'INSERT') AS writer_samples")),
        ("helpers", exec_(HELPERS)),
        ("configure", query(CONFIGURE, *DEFAULTS)),
        ("configure_again", query(CONFIGURE, *DEFAULTS)),
        ("jobs_count", query("SELECT count(*) AS n FROM timescaledb_information.jobs "
                             "WHERE hypertable_name IS NOT NULL")),
        ("late_zero", query(
            "SELECT pg_temp.try_sql($$SELECT pgpulse_configure('14 days', '90 days', '365 days', "
            "'0', '3 days')$$) AS error")),
        ("late_too_long", query(
            "SELECT pg_temp.try_sql($$SELECT pgpulse_configure('14 days', '90 days', '365 days', "
            "'14 days', '3 days')$$) AS error")),
        ("configure_final", query(CONFIGURE, *DEFAULTS)),
        ("jobs", query(JOBS)),
        ("meta", query("SELECT key, value FROM pgpulse_meta ORDER BY key")),
        ("data", exec_(DATA)),
        ("refresh_5m", exec_("CALL refresh_continuous_aggregate('samples_5m', NULL, NULL)")),
        ("refresh_1h", exec_("CALL refresh_continuous_aggregate('samples_1h', NULL, NULL)")),
        ("refresh_h5m", exec_("CALL refresh_continuous_aggregate('system_metrics_5m', NULL, NULL)")),
        ("refresh_h1h", exec_("CALL refresh_continuous_aggregate('system_metrics_1h', NULL, NULL)")),
        ("raw_count", query("SELECT count(*) AS n FROM samples")),
        ("old_5m_before", query(f"SELECT pg_temp.materialized_rows('samples_5m', {HORIZON}) AS n")),
        ("compress", exec_(
            "DO $$ BEGIN CALL run_job(pg_temp.job_of('policy_compression', 'samples')); END $$")),
        ("chunks", query(
            "SELECT range_end <= now() - INTERVAL '3 days' AS old, is_compressed "
            "FROM timescaledb_information.chunks WHERE hypertable_name = 'samples' ORDER BY range_start")),
        ("raw_count_compressed", query("SELECT count(*) AS n FROM samples")),
        ("dropped", query(f"SELECT drop_chunks('samples', older_than => {HORIZON})::text AS chunk")),
        ("policy_refresh", exec_(
            "DO $$ BEGIN CALL run_job(pg_temp.job_of('policy_refresh_continuous_aggregate', "
            "'samples_5m')); END $$")),
        ("old_5m_after_policy", query(f"SELECT pg_temp.materialized_rows('samples_5m', {HORIZON}) AS n")),
        ("old_5m_below_raw", query(f"SELECT pg_temp.materialized_rows('samples_5m', {OLDEST_RAW}) AS n")),
        ("full_refresh", exec_("CALL refresh_continuous_aggregate('samples_5m', NULL, NULL)")),
        ("old_5m_after_full", query(f"SELECT pg_temp.materialized_rows('samples_5m', {OLDEST_RAW}) AS n")),
    ]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    scenario = _scenario()
    results = PGliteRunner().run([step for _, step in scenario])
    return {name: result for (name, _), result in zip(scenario, results, strict=True)}


def test_ddl_applies_and_records_the_engine(run):
    assert run["extension"][0]["extversion"].startswith("2.23")
    assert run["alembic"] == [{"version_num": schema.head_revision()}]
    assert run["engine"] == [{"value": "timescale"}]
    assert run["hypertables"] == [
        {"hypertable_name": "samples", "compression_enabled": True},
        {"hypertable_name": "system_metrics", "compression_enabled": True},
    ]
    assert run["grants"] == [{"reader_tiers": True, "reader_keys": False, "writer_samples": True}]


def test_four_continuous_aggregates_and_1h_is_hierarchical(run):
    caggs = {row["view_name"]: row for row in run["caggs"]}
    assert set(caggs) == set(TIERS)
    for view, source in TIERS.items():
        expected = caggs[source]["materialization_hypertable_name"] if source in caggs else source
        assert caggs[view]["hypertable_name"] == expected, view
        assert caggs[view]["materialized_only"] is False  # real-time, like the portable views
    columns = {row["table_name"]: row["columns"] for row in run["tier_columns"]}
    contract = ["bucket", "series_id", "count", "sum", "min", "max", "last"]
    assert columns == {"samples_1h": contract, "samples_5m": contract}


def test_configure_makes_retention_refresh_and_compression_policies(run):
    jobs = {(j["hypertable_name"], j["proc_name"]): j for j in run["jobs"]}
    day = 86400
    assert set(jobs) == {
        ("samples", "policy_retention"), ("samples", "policy_compression"),
        ("system_metrics", "policy_retention"), ("system_metrics", "policy_compression"),
        *((view, "policy_refresh_continuous_aggregate") for view in TIERS),
        *((view, "policy_retention") for view in TIERS),
    }
    for raw in ("samples", "system_metrics"):
        assert jobs[raw, "policy_retention"]["drop_after_s"] == RAW_KEEP_DAYS * day
        assert jobs[raw, "policy_compression"]["compress_after_s"] == 3 * day
    for view in ("samples_5m", "system_metrics_5m"):
        assert jobs[view, "policy_retention"]["drop_after_s"] == 90 * day
        assert jobs[view, "policy_refresh_continuous_aggregate"]["end_offset_s"] == 300
    for view in ("samples_1h", "system_metrics_1h"):
        assert jobs[view, "policy_retention"]["drop_after_s"] == 365 * day
        assert jobs[view, "policy_refresh_continuous_aggregate"]["end_offset_s"] == 3600
    assert all(j["scheduled"] for j in run["jobs"])
    # Re-running configure replaces the policies instead of adding more.
    assert run["jobs_count"] == [{"n": len(jobs)}]
    meta = {row["key"]: row["value"] for row in run["meta"]}
    assert meta["raw_retention"] == f"{RAW_KEEP_DAYS} days" and meta["late_window"] == "01:00:00"


def test_configure_accepts_a_zero_late_window(run):
    # TimescaleDB wants a refresh window of at least two buckets.
    assert run["late_zero"] == [{"error": None}]


def test_configure_refuses_a_late_window_as_long_as_raw_retention(run):
    assert "must be shorter than raw retention" in run["late_too_long"][0]["error"]


def test_compression_policy_compresses_old_raw_chunks(run):
    chunks = run["chunks"]
    assert any(c["old"] for c in chunks) and not all(c["old"] for c in chunks)
    assert all(c["is_compressed"] == c["old"] for c in chunks)
    assert run["raw_count_compressed"] == run["raw_count"]


def test_refresh_windows_start_inside_the_retention_of_their_source(run):
    """TimescaleDB empties materialized buckets when a refresh covers dropped chunks.

    So what protects the 5m rows of dropped raw data is that the refresh policies'
    windows (start_offset) are shorter than the retention of what they read.
    """
    jobs = {(j["hypertable_name"], j["proc_name"]): j for j in run["jobs"]}
    for view, source in TIERS.items():
        refresh = jobs[view, "policy_refresh_continuous_aggregate"]
        assert refresh["start_offset_s"] < jobs[source, "policy_retention"]["drop_after_s"], view
        # ... and long enough to cover every write the source still keeps, but a day
        assert refresh["start_offset_s"] == jobs[source, "policy_retention"]["drop_after_s"] - 86400, view

    before = run["old_5m_before"][0]["n"]
    assert before > 0 and run["dropped"]
    # The refresh policy, after raw chunks were dropped: old 5m rows stay.
    assert run["old_5m_after_policy"][0]["n"] == before
    # A refresh over the dropped range (as a back-fill over everything would do)
    # deletes them: this is TimescaleDB's behaviour that the windows guard against.
    assert run["old_5m_below_raw"][0]["n"] > 0
    assert run["old_5m_after_full"][0]["n"] == 0


# -- chunk intervals follow the retention, so retention drops what it should ------------

# raw 4 days, 5m 4 days, 1h 8 days: chunks of 13 h (raw, 5m) and 27 h (1h), a seventh
# of each retention in whole hours.
SHORT = ("4 days", "4 days", "8 days", "1 hour", "3 days")
MATERIALIZED = """
SELECT c.view_name, extract(epoch FROM d.time_interval)::bigint AS chunk_s
FROM timescaledb_information.continuous_aggregates c
JOIN timescaledb_information.dimensions d
  ON d.hypertable_schema = c.materialization_hypertable_schema
 AND d.hypertable_name = c.materialization_hypertable_name
UNION ALL
SELECT hypertable_name, extract(epoch FROM time_interval)::bigint
FROM timescaledb_information.dimensions WHERE hypertable_name IN ('samples', 'system_metrics')
ORDER BY 1
"""
SIX_DAYS = """
INSERT INTO series (name, labels) VALUES ('disk_temp', '{"host": "alpha"}');
INSERT INTO samples (time, series_id, value)
SELECT t, 1, 1 FROM generate_series(now() - INTERVAL '6 days', now(), INTERVAL '10 minutes') t;
"""
STORED_5M = """
SELECT count(*) AS n, min(bucket) < now() - INTERVAL '5 days' AS older_than_5_days,
       min(bucket) >= now() - INTERVAL '4 days 13 hours' AS inside_retention_and_a_chunk,
       count(*) FILTER (WHERE bucket >= now() - INTERVAL '4 days') AS kept
FROM (SELECT bucket FROM samples_5m) s
"""


def retention_steps() -> list[Step]:
    return [
        query(CONFIGURE, *SHORT),
        PAUSE_JOBS,
        query(MATERIALIZED),
        exec_(SIX_DAYS),
        # Materialise everything (the policy windows stay inside the raw retention).
        query("CALL refresh_continuous_aggregate('samples_5m', NULL, "
              "date_bin(INTERVAL '5 minutes', now(), '1970-01-01'))"),
        query("ALTER MATERIALIZED VIEW samples_5m SET (timescaledb.materialized_only = true)"),
        query(STORED_5M),
        exec_("DO $$ DECLARE j integer; BEGIN SELECT job_id INTO STRICT j FROM timescaledb_information.jobs "
              "WHERE proc_name = 'policy_retention' AND hypertable_name = 'samples_5m'; CALL run_job(j); END $$"),
        query(STORED_5M),
    ]


def _check_retention(results: list) -> None:
    chunks = {row["view_name"]: row["chunk_s"] for row in results[2]}
    hour = 3600
    assert chunks == {"samples": 13 * hour, "system_metrics": 13 * hour, "samples_5m": 13 * hour,
                      "system_metrics_5m": 13 * hour, "samples_1h": 27 * hour, "system_metrics_1h": 27 * hour}
    before, after = results[-3][0], results[-1][0]
    assert before["older_than_5_days"] and before["n"] >= 6 * 24 * 6  # a sample every 10 minutes
    # Everything older than the retention and one chunk is gone; nothing inside it.
    assert after["inside_retention_and_a_chunk"] and after["kept"] == before["kept"] > 0


def test_retention_drops_what_it_should():
    _check_retention(PGliteRunner().run([exec_(schema.offline_sql("timescale")), *retention_steps()])[1:])


@pytest.mark.engine("timescale")
def test_retention_drops_what_it_should_server(db_url):
    _check_retention(run_on_server(db_url, retention_steps()))
