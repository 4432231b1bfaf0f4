"""Portable engine: rollups incremental and idempotent, late data, retention, partitions.

Time is passed explicitly (the functions' ``at`` argument), so the tests can move the
clock instead of waiting for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

# The rollup tables, watermarks, partitions and invalidation log of the portable engine.
pytestmark = pytest.mark.engine("portable")

LATE = timedelta(hours=1)
RAW_KEEP = timedelta(days=14)
KEEP_5M = timedelta(days=90)
KEEP_1H = timedelta(days=365)
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def refresh(conn, at: datetime) -> dict[str, int]:
    rows = conn.execute(
        "SELECT relation, buckets FROM pgpulse_refresh_tiers(%s, %s, %s, %s)",
        (LATE, RAW_KEEP, KEEP_5M, at),
    ).fetchall()
    return dict(rows)


def add_samples(conn, series_id: int, start: datetime, end: datetime, every: str = "10 seconds", value: str = "1.0"):
    conn.execute(
        f"INSERT INTO samples SELECT t, %s, {value} FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 microsecond', %s::interval) t",  # noqa: S608 - value is a test constant
        (series_id, start, end, every),
    )


def store(conn, tier: str) -> list[tuple]:
    return conn.execute(
        f"SELECT bucket, series_id, count, sum, min, max, last FROM pgpulse_samples_{tier}_store ORDER BY 1, 2"  # noqa: S608
    ).fetchall()


def view(conn, relation: str, series_id: int = 1) -> list[tuple]:
    return conn.execute(
        f"SELECT bucket, count, sum, min, max, last FROM {relation} WHERE series_id = %s ORDER BY 1",  # noqa: S608
        (series_id,),
    ).fetchall()


def test_rollup_aggregates_complete_buckets(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=2), value="extract(epoch from t)::int %% 97")
    refresh(conn, at=T0 + timedelta(hours=2))
    rows5 = store(conn, "5m")
    assert len(rows5) == 24
    raw = conn.execute(
        "SELECT date_bin('5 minutes', time, '1970-01-01'), count(*), sum(value), min(value), max(value) "
        "FROM samples GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows5] == raw
    # last = the value at the newest time of the bucket
    first_bucket_last = conn.execute(
        "SELECT value FROM samples WHERE time < %s ORDER BY time DESC LIMIT 1", (T0 + timedelta(minutes=5),)
    ).fetchone()[0]
    assert rows5[0][6] == first_bucket_last
    rows1 = store(conn, "1h")
    assert [(r[0], r[2]) for r in rows1] == [(T0, 360), (T0 + timedelta(hours=1), 360)]


def test_rollup_is_incremental_and_idempotent(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=1))
    first = refresh(conn, at=T0 + timedelta(hours=1))
    assert first["samples_5m"] == 12
    before = store(conn, "5m"), store(conn, "1h")
    again = refresh(conn, at=T0 + timedelta(hours=1))
    assert (store(conn, "5m"), store(conn, "1h")) == before
    assert again["samples_5m"] == 12  # the late window is re-aggregated, to the same result
    add_samples(conn, 1, T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    later = refresh(conn, at=T0 + timedelta(hours=3))
    # only the late window and the new part are touched, not history before it
    assert later["samples_5m"] == 36
    assert len(store(conn, "5m")) == 36
    assert sum(r[2] for r in store(conn, "1h")) == 3 * 360


def test_late_data_inside_window_is_taken_in(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=2))
    refresh(conn, at=T0 + timedelta(hours=2))
    late_time = T0 + timedelta(hours=1, minutes=30, seconds=5)
    conn.execute("INSERT INTO samples VALUES (%s, 1, 100.0)", (late_time,))
    refresh(conn, at=T0 + timedelta(hours=2, minutes=10))
    bucket = dict((r[0], r) for r in store(conn, "5m"))[T0 + timedelta(hours=1, minutes=30)]
    assert bucket[2] == 31 and bucket[5] == 100.0
    hour = dict((r[0], r) for r in store(conn, "1h"))[T0 + timedelta(hours=1)]
    assert hour[2] == 361


def test_late_data_outside_window_is_taken_in_through_the_invalidation_log(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=4))
    refresh(conn, at=T0 + timedelta(hours=4))
    conn.execute("INSERT INTO samples VALUES (%s, 1, 100.0)", (T0 + timedelta(minutes=1, seconds=1),))
    logged = conn.execute("SELECT relation, lo, hi FROM pgpulse_invalidations").fetchall()
    assert logged == [("samples", T0 + timedelta(minutes=1, seconds=1), T0 + timedelta(minutes=1, seconds=1))]
    touched = refresh(conn, at=T0 + timedelta(hours=4, minutes=5))
    assert store(conn, "5m")[0][2] == 31 and store(conn, "5m")[0][5] == 100.0
    assert store(conn, "1h")[0][2] == 361
    # the log is consumed: the late bucket, plus the forward range (late window)
    assert conn.execute("SELECT count(*) FROM pgpulse_invalidations").fetchone()[0] == 0
    assert touched["samples_5m"] == 1 + 12 and touched["samples_1h"] == 1 + 1


def test_on_time_writes_log_nothing(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=1))
    refresh(conn, at=T0 + timedelta(hours=1))
    add_samples(conn, 1, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert conn.execute("SELECT count(*) FROM pgpulse_invalidations").fetchone()[0] == 0


def test_views_add_the_part_above_the_watermark(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=1))
    refresh(conn, at=T0 + timedelta(minutes=30))
    # 6 buckets rolled up, 6 more still only in raw: the view shows all 12
    assert len(store(conn, "5m")) == 6
    rows = view(conn, "samples_5m")
    assert len(rows) == 12 and all(r[1] == 30 for r in rows)
    assert [r[1] for r in view(conn, "samples_1h")] == [360]


def test_views_equal_a_full_rollup(conn):
    add_samples(conn, 1, T0, T0 + timedelta(hours=3), every="7 seconds", value="random()")
    refresh(conn, at=T0 + timedelta(hours=1, minutes=17))
    partial = view(conn, "samples_5m"), view(conn, "samples_1h")
    refresh(conn, at=T0 + timedelta(hours=4))
    full = view(conn, "samples_5m"), view(conn, "samples_1h")
    assert partial[0] == full[0]
    assert [r[:2] for r in partial[1]] == [r[:2] for r in full[1]]
    for a, b in zip(partial[1], full[1], strict=True):
        assert a[2] == pytest.approx(b[2], rel=1e-12)


def test_host_tiers_ignore_non_numbers(conn):
    conn.execute(
        """
        INSERT INTO system_metrics
        SELECT t, 'h1', jsonb_build_object(
            'cpu', jsonb_build_object('percent', CASE WHEN t = %(t0)s THEN to_jsonb('high'::text) ELSE to_jsonb(50) END),
            'filesystems', jsonb_build_object('/', jsonb_build_object('percent', 10)))
        FROM generate_series(%(t0)s::timestamptz, %(t0)s::timestamptz + interval '299 seconds', interval '10 seconds') t
        """,
        {"t0": T0},
    )
    refresh(conn, at=T0 + timedelta(hours=1))
    row = conn.execute(
        "SELECT snapshots, cpu_percent_count, cpu_percent_sum, rootfs_percent_max, load1_count "
        "FROM system_metrics_5m WHERE host = 'h1'"
    ).fetchone()
    assert row == (30, 29, 29 * 50.0, 10.0, 0)


def test_retention_drops_old_partitions_and_rollups(conn):
    old = datetime.now(UTC) - timedelta(days=20)
    conn.execute("SELECT pgpulse_ensure_partitions('samples', %s, %s)", (old, old + timedelta(days=1)))
    conn.execute("INSERT INTO samples VALUES (%s, 1, 1.0), (now(), 1, 2.0)", (old,))
    conn.execute(
        "INSERT INTO pgpulse_samples_5m_store VALUES (%s, 1, 1, 1, 1, 1, 1), (%s, 1, 1, 1, 1, 1, 1)",
        (datetime.now(UTC) - timedelta(days=100), datetime.now(UTC) - timedelta(days=30)),
    )
    dropped = conn.execute(
        "SELECT pgpulse_maintain(%s, %s, %s, %s)", (RAW_KEEP, KEEP_5M, KEEP_1H, timedelta(days=7))
    ).fetchone()[0]
    assert dropped >= 1
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM pgpulse_samples_5m_store").fetchone()[0] == 1
    name = "samples_p" + old.strftime("%Y%m%d")
    assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None


def test_rows_outside_partitions_are_kept_and_moved_when_partition_appears(conn):
    future = datetime.now(UTC) + timedelta(days=30)
    conn.execute("INSERT INTO samples VALUES (%s, 1, 7.0)", (future,))
    assert conn.execute("SELECT count(*) FROM samples_default").fetchone()[0] == 1
    made = conn.execute(
        "SELECT pgpulse_ensure_partitions('samples', %s, %s)", (future, future + timedelta(hours=1))
    ).fetchone()[0]
    assert made == 1
    assert conn.execute("SELECT count(*) FROM samples_default").fetchone()[0] == 0
    name = "samples_p" + future.strftime("%Y%m%d")
    assert conn.execute(f"SELECT value FROM {name}").fetchone()[0] == 7.0  # noqa: S608


def test_rollup_never_rewrites_buckets_whose_raw_data_retention_dropped(conn):
    """A long pause must not wipe rollups of a range whose raw partitions are gone."""
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=15)
    conn.execute("SELECT pgpulse_ensure_partitions('samples', %s, %s)", (old, old + timedelta(days=1)))
    add_samples(conn, 1, old, old + timedelta(hours=1))
    refresh(conn, at=old + timedelta(hours=1))
    assert len(store(conn, "5m")) == 12
    # Days later raw retention has dropped that range; the next refresh runs from a
    # watermark far in the past but must not delete what it cannot recompute.
    conn.execute(
        "SELECT pgpulse_maintain(%s, %s, %s, %s)", (RAW_KEEP, KEEP_5M, KEEP_1H, timedelta(days=7))
    )
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 0
    refresh(conn, at=datetime.now(UTC))
    assert len(store(conn, "5m")) == 12


@pytest.mark.parametrize("family", ["samples", "hosts"])
def test_tier_relations_have_the_registry_columns(conn, family):
    """The migrations' tier columns are the registry's (pgpulse.tiers.HOST_FIELDS)."""
    from pgpulse import tiers

    for t in tiers.ROLLED_UP:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (t.relation(family),),
        ).fetchall()]
        assert columns == tiers.store_columns(family), t.relation(family)


def test_a_write_that_read_the_old_watermark_is_taken_in_by_the_next_run(conn):
    """A statement that compared with the watermark before a run moved it (so logged
    nothing) and committed after that run aggregated is re-read by the next run,
    even after a pause longer than the late window."""
    add_samples(conn, 1, T0, T0 + timedelta(hours=1))
    refresh(conn, at=T0 + timedelta(hours=1))
    add_samples(conn, 1, T0 + timedelta(hours=1), T0 + timedelta(hours=5))
    refresh(conn, at=T0 + timedelta(hours=5))  # after a 4-hour pause
    # The in-flight write: older than this run's watermark, above the one before it,
    # and not in the log (the trigger saw the old watermark). Replica mode skips it.
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO samples VALUES (%s, 1, 100.0)", (T0 + timedelta(hours=1, minutes=30, seconds=1),))
    conn.execute("RESET session_replication_role")
    refresh(conn, at=T0 + timedelta(hours=5, minutes=1))
    bucket = dict((r[0], r) for r in store(conn, "5m"))[T0 + timedelta(hours=1, minutes=30)]
    assert bucket[2] == 31 and bucket[5] == 100.0
    hour = dict((r[0], r) for r in store(conn, "1h"))[T0 + timedelta(hours=1)]
    assert hour[2] == 361


def test_downgrade_to_0002_keeps_a_working_rollup(db_url):
    import psycopg

    from pgpulse import schema

    schema.downgrade(db_url, "0002_etl_rejects")
    with psycopg.connect(db_url, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('pgpulse_invalidations')").fetchone()[0] is None
        add_samples(c, 1, T0, T0 + timedelta(hours=1))
        assert refresh(c, at=T0 + timedelta(hours=1))["samples_5m"] == 12
    schema.upgrade(db_url, "portable")
    with psycopg.connect(db_url, autocommit=True) as c:
        assert schema.current_revision(c) == schema.head_revision()
        assert refresh(c, at=T0 + timedelta(hours=1))["samples_5m"] == 12
