"""Reads of the rolled-up tiers: rows planned for the range (store and live parts with
constant bounds) equal the tier relations' rows, and a step equal to the tier's width
(rows read as they are) answers what regrouping the tier's rows per step answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from pgpulse import tiers
from pgpulse.reads import read_host_field, read_series
from pgpulse.store.tier_reads import tier_rows
from pgpulse.tiers import EPOCH, Retention

KEEP = Retention(raw=timedelta(days=14), m5=timedelta(days=90), h1=timedelta(days=365))


@pytest.fixture
def mixed(conn):
    """Two series and two hosts over 8 hours of irregular values, rolled up, then two more
    hours written after the rollup (above the watermarks: the live parts). Values are
    multiples of 1/8, so a sum is exact whatever order a plan adds the rows in."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=10)
    conn.execute("INSERT INTO series (name, labels) VALUES ('m', '{\"k\": \"a\"}'), ('m', '{\"k\": \"b\"}')")

    def write(lo: datetime, hi: datetime) -> None:
        conn.execute(
            "INSERT INTO samples SELECT t, s, (extract(epoch FROM t)::bigint * s %% 97) / 8.0 "
            "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '13 seconds') t, "
            "generate_series(1, 2) s ON CONFLICT DO NOTHING", (lo, hi))
        conn.execute(
            "INSERT INTO system_metrics SELECT t, h, jsonb_build_object('load', jsonb_build_object("
            "'load1', (extract(epoch FROM t)::bigint %% 31) / 4.0)) "
            "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '17 seconds') t, "
            "unnest(ARRAY['a', 'b']) h ON CONFLICT DO NOTHING", (lo, hi))

    write(start, end - timedelta(hours=3))
    # Rolled up as of 3 hours before the end: the watermarks stay there.
    conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days', %s)",
                 (end - timedelta(hours=3),))
    write(end - timedelta(hours=3), end)
    return start, end


def columns(family: str) -> sql.Composable:
    names = ["bucket", tiers.FAMILY_KEYS[family]]
    names += [("" if family == "samples" else "load1_") + c for c in tiers.ROLLUP_COLUMNS]
    return sql.SQL(", ").join(sql.Identifier(c) for c in names)


def view_rows(conn, family: str, tier: str, lo: datetime, hi: datetime) -> list[tuple]:
    rel = tiers.tier(tier).relation(family)
    return conn.execute(sql.SQL("SELECT {} FROM {} WHERE bucket >= %s AND bucket < %s ORDER BY 1, 2").format(
        columns(family), sql.Identifier(rel)), (lo, hi)).fetchall()


def planned_rows(conn, family: str, tier: str, lo: datetime, hi: datetime) -> list[tuple]:
    rows, params = tier_rows(conn, family, tier, lo, hi, None if family == "samples" else "load1")
    return conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE bucket >= %(lo)s AND bucket < %(hi)s ORDER BY 1, 2").format(
            columns(family), rows), {**params, "lo": lo, "hi": hi}).fetchall()


@pytest.mark.parametrize("family", ["samples", "hosts"])
@pytest.mark.parametrize("tier", ["5m", "1h"])
def test_planned_rows_equal_the_tier_relation(conn, mixed, family, tier):
    start, end = mixed
    ranges = [(start, end), (start + timedelta(minutes=7, seconds=3), end - timedelta(minutes=41)),
              (end - timedelta(hours=2, minutes=10), end), (end - timedelta(minutes=2), end),
              (start - timedelta(days=2), start), (end, end)]
    for lo, hi in ranges:
        expected = view_rows(conn, family, tier, lo, hi)
        assert planned_rows(conn, family, tier, lo, hi) == expected, (lo, hi)


@pytest.mark.engine("portable")
def test_the_data_has_a_store_part_and_a_live_part(conn, mixed):
    # The comparisons above cover both parts of every tier relation.
    start, end = mixed
    for family in ("samples", "hosts"):
        for tier in ("5m", "1h"):
            mark = conn.execute("SELECT pgpulse_watermark(%s)", (tiers.tier(tier).relation(family),)).fetchone()[0]
            assert start < mark < end - timedelta(hours=2)
            assert view_rows(conn, family, tier, mark, end) and view_rows(conn, family, tier, start, mark)


def regrouped(conn, family: str, keys, tier: str, step: timedelta, agg: str, lo: datetime, hi: datetime,
              prefix: str = "") -> dict:
    """What a read at ``step`` answered before rows were read as they are: the tier's
    rows grouped per step with the registry's aggregate."""
    t = tiers.tier(tier)
    key = tiers.FAMILY_KEYS[family]
    query = sql.SQL(
        "SELECT {key}, date_bin(%(step)s, bucket, %(origin)s), {agg} FROM {rel} "
        "WHERE {key} = ANY(%(keys)s) AND bucket >= %(lo)s AND bucket < %(hi)s GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(key=sql.Identifier(key), agg=sql.SQL(t.aggregate(agg, prefix=prefix)),
             rel=sql.Identifier(t.relation(family)))
    out: dict = {}
    bound = {"step": step, "origin": EPOCH, "keys": keys, "lo": lo, "hi": hi}
    for k, when, v in conn.execute(query, bound):
        if v is not None:
            out.setdefault(k, []).append((when, v))
    return out


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count", "last"])
@pytest.mark.parametrize("tier", ["5m", "1h"])
def test_step_of_the_tier_width_equals_the_regrouped_answer(conn, mixed, agg, tier):
    start, end = mixed
    step = tiers.tier(tier).width
    lo = start + timedelta(minutes=3)  # not on a bucket boundary
    result = read_series(conn, [1, 2], lo, end, step, agg, KEEP)
    assert result.tier == tier
    assert result.points == regrouped(conn, "samples", [1, 2], tier, step, agg, lo, end)
    assert len(result.points[1]) >= (9 * 3600) // step.total_seconds()


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count", "last"])
@pytest.mark.parametrize("tier", ["5m", "1h"])
def test_host_field_at_the_tier_width_equals_the_regrouped_answer(conn, mixed, agg, tier):
    start, end = mixed
    step = tiers.tier(tier).width
    result = read_host_field(conn, ["a", "b"], "load1", start, end, step, agg, KEEP)
    assert result.tier == tier
    assert set(result.points) == {"a", "b"}
    assert result.points == regrouped(conn, "hosts", ["a", "b"], tier, step, agg, start, end, prefix="load1_")


@pytest.mark.engine("portable")
def test_live_part_is_pruned_at_plan_time(conn, mixed):
    conn.execute("SELECT pgpulse_ensure_partitions('samples', now() - interval '2 days', now() + interval '7 days')")
    start, end = mixed
    lo = end - timedelta(hours=2)
    rows, params = tier_rows(conn, "samples", "5m", lo, end)
    plan = "\n".join(r[0] for r in conn.execute(
        sql.SQL("EXPLAIN SELECT * FROM {} WHERE bucket >= %(lo)s AND bucket < %(hi)s").format(rows),
        {**params, "lo": lo, "hi": end}))
    view_plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN SELECT * FROM samples_5m WHERE bucket >= %s AND bucket < %s", (lo, end)))
    partitions = set(re.findall(r"samples_p\d{8}", plan))
    days = {f"samples_p{d:%Y%m%d}" for d in (lo, end, end + timedelta(minutes=5))}
    assert partitions and partitions <= days
    # The view, by contrast, plans every partition (pruned only when it runs).
    assert len(set(re.findall(r"samples_p\d{8}", view_plan))) > len(partitions)
