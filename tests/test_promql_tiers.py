"""PromQL answers from the 5m and 1h tiers equal the same queries read raw.

The data has samples exactly on bucket boundaries and a fraction of a millisecond
either side of them, gaps longer than the lookback, staleness markers, a NaN and an
infinity, and counters with resets. Part of it is rolled up (a refresh), part written late
and taken in by the next refresh, and part newer than the watermark (the views'
live part). Every expression runs with the
tiers (``PROXY_PROMQL_TIERS`` on) and without, as range queries at aligned and
unaligned steps and as instant queries; answers must be equal (same series, labels
and timestamps; values within 1e-9 relative, the tier summing per-bucket sums in
another order), and the aligned ones must say a tier served them.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import psycopg
import pytest
from promql_oracle import differences

from pgpulse import tiers
from pgpulse.promql import Limits, instant_query, range_query
from pgpulse.store.batch import PG_EPOCH_US, Batch
from pgpulse.store.samples import write_batch
from pgpulse.store.series import SeriesLimits

S = 1000
M = 60 * S
H = 60 * M
NOW = int(datetime.now(UTC).timestamp() * 1000)
BASE = (NOW // H) * H - 28 * H  # whole hours, inside every retention
SPAN = 28 * H  # to the current hour; samples go on until now

TIERED = Limits(tiers=True)
RAW = Limits(tiers=False)


def _us(ms: float) -> int:
    return round(ms * 1000) - PG_EPOCH_US


def _write(conn: psycopg.Connection, start: int, end: int) -> None:
    """Samples of every series in [start, end) ms (and their markers)."""
    rng = random.Random(start)
    batch = Batch()
    a = batch.series("tg", {"s": "a"}, "gauge")
    b = batch.series("tg", {"s": "b"}, "gauge")
    c = batch.series("tg", {"s": "c"}, "gauge")
    d = batch.series("tg", {"s": "d"}, "gauge")
    k = batch.series("tc_total", {"s": "a"}, "counter")
    gap = (BASE + 5 * H + 7 * M, BASE + 5 * H + 31 * M)
    counter = 0.0
    for t in range(start, end, 10 * S):
        # a: every 10 s on the epoch grid, so on every 5m and 1h boundary; one long gap.
        if not gap[0] <= t < gap[1]:
            batch.rows.append((_us(t), a, round(rng.uniform(-50, 50), 7)))
        # d: as a, with one NaN and one +Inf (the tiers must not serve those windows).
        value = rng.uniform(0, 10)
        if t == BASE + 3 * H + 20 * S:
            value = math.nan
        if t == BASE + 9 * H + 5 * M:
            value = math.inf
        batch.rows.append((_us(t), d, value))
        counter = rng.uniform(0, 2) if rng.random() < 0.01 else counter + rng.uniform(0, 5)
        batch.rows.append((_us(t), k, counter))
    for t in range(start, end, 5 * M):
        # b: a fraction of a millisecond either side of each boundary, and off-grid.
        for at in (t - 0.4, t + 0.4, t + 61_123.25):
            if start <= at < end:
                batch.rows.append((_us(at), b, rng.uniform(100, 200)))
    for t in range(start, end, 15 * S):
        # c: every 15 s, with a staleness marker after each sixth hour's first 20 minutes.
        offset = (t - BASE) % (6 * H)
        if offset < 20 * M:
            batch.rows.append((_us(t), c, rng.uniform(0, 1)))
        elif offset == 20 * M:
            batch.stale.append((_us(t + 1), c))
    with conn.transaction():
        write_batch(conn, batch, SeriesLimits(max_series=1000, max_series_per_metric=1000), tenant="default")


@pytest.fixture(scope="module")
def loaded(module_db_url: str, tmp_path_factory) -> str:
    from pgpulse.settings import load_core

    with psycopg.connect(module_db_url) as conn:
        _write(conn, BASE, BASE + 20 * H)
    settings = load_core({}, database_url=module_db_url, data_dir=tmp_path_factory.mktemp("state"))
    tiers.refresh(module_db_url, settings, backfill=True)
    # Hours older than the rollups' watermark, written late and taken in by the next
    # refresh; then 20 minutes from the next 5-minute boundary on, newer than any
    # watermark that refresh can set, which the views add from raw.
    now = int(datetime.now(UTC).timestamp() * 1000)
    with psycopg.connect(module_db_url) as conn:
        _write(conn, BASE + 20 * H, now - now % (10 * S))
    tiers.refresh(module_db_url, settings, backfill=True)
    after = int(datetime.now(UTC).timestamp() * 1000)
    live = after - after % (5 * M) + 5 * M
    with psycopg.connect(module_db_url) as conn:
        _write(conn, live, live + 20 * M)
    return module_db_url


EXPRESSIONS = [
    "tg",
    "sum by (s) (tg)",
    "max_over_time(tg[1h])",
    "min_over_time(tg[5m])",
    "sum_over_time(tg[1h])",
    "sum_over_time(tg[15m])",
    "count_over_time(tg[10m])",
    "avg_over_time(tg[2h])",
    "present_over_time(tg[5m])",
    "max_over_time(tg[1h] offset 1h)",
    "count_over_time(tg[7m])",
    "last_over_time(tg[1h])",
    "rate(tc_total[5m])",
    "max_over_time(tg[1h]) - min_over_time(tg[1h])",
]
# (start, end, step) in ms: aligned to 1h, to 5m, and not aligned.
RANGES = [
    (BASE + H, BASE + SPAN + H, H),
    (BASE + 2 * H, BASE + 8 * H, 5 * M),
    (NOW - NOW % (5 * M) - 6 * H, NOW - NOW % (5 * M) + 3 * H, 5 * M),  # the live part too
    (BASE + 3 * H, BASE + 27 * H, 15 * M),
    (BASE + 2 * H + 17 * S, BASE + 8 * H, 5 * M),
]
INSTANTS = [BASE + 4 * H, BASE + 6 * H + 20 * M, BASE + SPAN - 5 * M, BASE + 4 * H + 1]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_tier_answers_equal_raw_answers(loaded: str, expr: str) -> None:
    with psycopg.connect(loaded) as conn:
        for start, end, step in RANGES:
            raw = range_query(conn, expr, start, end, step, RAW, tenant="default")
            tiered = range_query(conn, expr, start, end, step, TIERED, tenant="default")
            assert raw.tiers == ["raw"] or raw.tiers == [], raw.sources
            assert raw.data()["result"], (expr, start, step)
            assert differences(raw.data(), tiered.data()) == [], (expr, start, end, step)
        for at in INSTANTS:
            raw = instant_query(conn, expr, at, RAW, tenant="default")
            tiered = instant_query(conn, expr, at, TIERED, tenant="default")
            assert differences(raw.data(), tiered.data()) == [], (expr, at)


@pytest.mark.parametrize(("expr", "step", "tier"), [
    ("max_over_time(tg[1h])", H, "1h"),
    ("sum_over_time(tg[1h])", H, "1h"),
    ("count_over_time(tg[10m])", 5 * M, "5m"),
    ("avg_over_time(tg[2h])", H, "1h"),
    ("tg", 5 * M, "5m"),
    ("sum by (s) (tg)", H, "5m"),
])
def test_aligned_windows_are_served_by_the_tier(loaded: str, expr: str, step: int, tier: str) -> None:
    with psycopg.connect(loaded) as conn:
        result = range_query(conn, expr.replace("tg", 'tg{s=~"a|b"}'), BASE + 2 * H,
                             BASE + 20 * H, step, TIERED, tenant="default")
    assert tier in result.tiers, result.sources
    assert "raw" not in result.tiers, result.sources


@pytest.mark.parametrize(("expr", "start", "step"), [
    ("count_over_time(tg[7m])", BASE + 2 * H, 5 * M),  # range not a multiple of 5m
    ("max_over_time(tg[1h])", BASE + 2 * H + 17 * S, H),  # times not on the buckets
    ("rate(tc_total[1h])", BASE + 2 * H, H),  # a bucket keeps no resets
    ("last_over_time(tg[1h])", BASE + 2 * H, H),
    ("max_over_time(tg{s=\"d\"}[1h])", BASE + 2 * H, H),  # a NaN and an +Inf inside
])
def test_what_tiers_cannot_answer_exactly_is_read_raw(loaded: str, expr: str, start: int,
                                                      step: int) -> None:
    with psycopg.connect(loaded) as conn:
        result = range_query(conn, expr, start, start + 12 * H, step, TIERED, tenant="default")
    assert result.tiers == ["raw"], result.sources


def test_series_with_staleness_markers_are_read_raw(loaded: str) -> None:
    with psycopg.connect(loaded) as conn:
        result = range_query(conn, "tg", BASE + 2 * H, BASE + 8 * H, 5 * M, TIERED, tenant="default")
    assert result.tiers == ["raw", "5m"]
    assert any("staleness" in what for _tier, what in result.sources)


def test_the_api_names_the_tiers_in_a_header_and_infos(loaded: str, make_app) -> None:
    client = make_app(DATABASE_URL=loaded).test_client()
    params = {"query": 'max_over_time(tg{s="a"}[1h])', "start": (BASE + 2 * H) / 1000,
              "end": (BASE + 8 * H) / 1000, "step": "1h"}
    r = client.get("/api/v1/query_range", query_string=params)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["X-Pgpulse-Tiers"] == "1h"
    assert r.get_json()["infos"] == [
        'max_over_time(tg{s="a"}[1h]) served by the 1h tier']
    assert "warnings" not in r.get_json()
    off = make_app(DATABASE_URL=loaded, PROXY_PROMQL_TIERS="off").test_client()
    r2 = off.get("/api/v1/query_range", query_string=params)
    assert r2.headers["X-Pgpulse-Tiers"] == "raw"
    assert "infos" not in r2.get_json()
    assert r2.get_json()["data"] == r.get_json()["data"]
