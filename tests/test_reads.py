"""Tier-aware reads: the right tier for the step, stitched where retention ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgpulse import tiers
from pgpulse.reads import ReadError, Segment, plan, read_host_field, read_series
from pgpulse.tiers import Retention

NOW = datetime(2026, 11, 22, 12, 30, tzinfo=UTC)
SHORT = Retention(raw=timedelta(days=1), m5=timedelta(days=3), h1=timedelta(days=10))


@pytest.mark.parametrize(
    ("step", "tier"),
    [(timedelta(seconds=10), "raw"), (timedelta(minutes=5), "5m"), (timedelta(minutes=30), "5m"),
     (timedelta(hours=1), "1h"), (timedelta(days=1), "1h")],
)
def test_tier_for_step(step, tier):
    assert tiers.choose(step).name == tier


def test_tier_choice_moves_coarser_where_retention_ends():
    step = timedelta(seconds=10)
    assert tiers.choose(step, NOW - timedelta(hours=23), retention=SHORT, now=NOW).name == "raw"
    assert tiers.choose(step, NOW - timedelta(days=2), retention=SHORT, now=NOW).name == "5m"
    assert tiers.choose(step, NOW - timedelta(days=30), retention=SHORT, now=NOW).name == "1h"


def test_every_aggregate_is_defined_for_every_tier():
    for t in tiers.TIERS:
        for agg in tiers.AGGREGATES:
            if agg != "rate":  # computed from last
                assert t.aggregate(agg, value="v", prefix="p_")
    avg = tiers.tier("5m").aggregate("avg", prefix="cpu_percent_", alias="p.")
    assert avg == "sum(p.cpu_percent_sum) / nullif(sum(p.cpu_percent_count), 0)"


def test_plan_inside_one_tier():
    start = NOW - timedelta(hours=3)
    assert plan(start, NOW, timedelta(seconds=10), SHORT, NOW) == [Segment("raw", start, NOW)]


def test_plan_stitches_at_hour_boundaries_when_retention_ends():
    start = NOW - timedelta(days=5)
    segments = plan(start, NOW, timedelta(seconds=10), SHORT, NOW)
    assert [s.tier for s in segments] == ["1h", "5m", "raw"]
    raw_from = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)  # now - 1 day, rounded up to the hour
    m5_from = datetime(2026, 11, 19, 13, 0, tzinfo=UTC)
    assert segments == [Segment("1h", start, m5_from), Segment("5m", m5_from, raw_from),
                        Segment("raw", raw_from, NOW)]


def test_plan_coarse_step_never_uses_finer_tier():
    segments = plan(NOW - timedelta(days=2), NOW, timedelta(hours=1), SHORT, NOW)
    assert [s.tier for s in segments] == ["1h"]


@pytest.fixture
def three_days(conn):
    """Samples every minute for 3 days ending at the last whole hour, value 1, rolled up."""
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=3)
    conn.execute("INSERT INTO series (name, labels) VALUES ('m', '{}')")
    conn.execute(
        "INSERT INTO samples SELECT t, 1, 1.0 FROM generate_series(%s::timestamptz, %s::timestamptz "
        "- interval '1 second', interval '1 minute') t",
        (start, end),
    )
    conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')")
    return start, end, now


def test_read_series_stitched_counts_every_sample_once(conn, three_days):
    start, end, now = three_days
    result = read_series(conn, [1], start, end, timedelta(minutes=1), "count", SHORT, now=now)
    assert [s.tier for s in result.segments] == ["1h", "5m", "raw"]
    assert result.tier == "raw"
    points = result.points[1]
    assert sum(v for _, v in points) == 3 * 24 * 60
    times = [t for t, _ in points]
    assert times == sorted(times) and len(times) == len(set(times))


@pytest.mark.parametrize(("agg", "expected"), [("avg", 1.0), ("min", 1.0), ("max", 1.0), ("sum", 60.0),
                                               ("count", 60.0), ("last", 1.0)])
def test_read_series_aggregates_in_rolled_up_tier(conn, three_days, agg, expected):
    start, end, now = three_days
    result = read_series(conn, [1], start, end, timedelta(hours=1), agg, SHORT, now=now)
    assert result.tier == "1h"
    assert len(result.points[1]) == 72
    assert {v for _, v in result.points[1]} == {expected}


def test_rate_of_a_counter_with_reset(conn):
    # Cases by hand are in test_rate.py; this checks the read from raw samples and the
    # datetime labels: each point T covers (T - 1 min, T].
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    conn.execute("INSERT INTO series (name, labels, type) VALUES ('requests_total', '{}', 'counter')")
    values = [10, 30, 50, 70, 10, 30]  # every 20 s from t0 + 10 s; reset after the fourth
    for i, v in enumerate(values):
        conn.execute("INSERT INTO samples VALUES (%s, 1, %s)", (t0 + timedelta(seconds=10 + 20 * i), v))
    result = read_series(conn, [1], t0, t0 + timedelta(minutes=2), timedelta(minutes=1), "rate", SHORT)
    assert result.tier == "raw"
    # (t0, t0+1m]: 40 over 40 s, 10 s to each edge: 40 * 60 / 40 / 60.
    # (t0+1m, t0+2m]: 70, 10, 30: increase 30 - 70 + 70 = 30: 30 * 60 / 40 / 60.
    assert result.points[1] == [(t0 + timedelta(minutes=1), pytest.approx(40 * 60 / 40 / 60)),
                                (t0 + timedelta(minutes=2), pytest.approx(30 * 60 / 40 / 60))]


def test_read_host_field_raw_and_tiers(conn):
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=2)
    conn.execute(
        "INSERT INTO system_metrics SELECT t, h, jsonb_build_object('load', jsonb_build_object('load1', 2)) "
        "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 second', interval '10 seconds') t, "
        "unnest(ARRAY['a', 'b']) h",
        (start, end),
    )
    conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')")
    raw = read_host_field(conn, ["a"], "load1", start, end, timedelta(minutes=1), "avg", SHORT, tenant="default")
    assert raw.tier == "raw" and set(raw.points) == {"a"} and len(raw.points["a"]) == 120
    hourly = read_host_field(conn, None, "load1", start, end, timedelta(hours=1), "count", SHORT, tenant="default")
    assert hourly.tier == "1h" and set(hourly.points) == {"a", "b"}
    assert [v for _, v in hourly.points["b"]] == [360.0, 360.0]


def test_bad_reads_are_refused(conn):
    with pytest.raises(ReadError, match="unknown host field"):
        read_host_field(conn, None, "cpu; drop table x", NOW - timedelta(hours=1), NOW, timedelta(minutes=1), "avg", SHORT, tenant="default")
    with pytest.raises(ReadError, match="unknown aggregate"):
        read_series(conn, [1], NOW - timedelta(hours=1), NOW, timedelta(minutes=1), "median", SHORT)
    with pytest.raises(ReadError, match="step must be positive"):
        read_series(conn, [1], NOW - timedelta(hours=1), NOW, timedelta(0), "avg", SHORT)
