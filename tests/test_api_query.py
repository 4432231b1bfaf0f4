"""GET /api/query (and /v1/query): selectors, aggregation, grouping, tiers, limits.

Real PostgreSQL (portable engine); tiers are filled with pgpulse_refresh_tiers().
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proxy_helpers import assert_error

HOUR = 3600


def ingest(client, name, labels, values, start, every=10.0, type_=None):
    metrics = [{"name": name, "labels": labels, "value": v, "timestamp": start + i * every}
               for i, v in enumerate(values)]
    if type_:
        for m in metrics:
            m["type"] = type_
    r = client.post("/api/ingest", json={"metrics": metrics})
    assert r.status_code == 200, r.json


@pytest.fixture
def loaded(client):
    base = (int(time.time()) // HOUR - 2) * HOUR  # an hour boundary, two hours back
    for host, zone, k in (("a", "eu-1", 1), ("b", "eu-2", 10), ("c", "us-1", 100)):
        ingest(client, "cpu_temp", {"host": host, "zone": zone}, [k * (i % 6) for i in range(360)], base)
    ingest(client, "reqs", {"host": "a"}, [i * 5 for i in range(360)], base, type_="counter")
    return client, base


def q(client, **params):
    return client.get("/api/query", query_string=params)


def test_selector_and_raw_aggregates(loaded):
    client, base = loaded
    r = q(client, query='cpu_temp{host="a"}', start=base, end=base + 600, step="60s", agg="avg")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["tier"] == "raw"
    [series] = body["series"]
    assert series["name"] == "cpu_temp" and series["labels"] == {"host": "a", "zone": "eu-1"}
    # Six samples per minute: 0..5 -> avg 2.5.
    assert series["points"][:2] == [[base, 2.5], [base + 60, 2.5]]
    assert len(series["points"]) == 10
    for agg, expected in (("min", 0), ("max", 5), ("sum", 15), ("count", 6), ("last", 5)):
        r = q(client, query='cpu_temp{host="a"}', start=base, end=base + 60, step="60s", agg=agg)
        assert r.json["series"][0]["points"] == [[base, expected]], agg


@pytest.mark.parametrize(
    ("selector", "hosts"),
    [
        ('cpu_temp{zone=~"eu-.*"}', ["a", "b"]),
        ('cpu_temp{zone!~"eu-.*"}', ["c"]),
        ('cpu_temp{host!="a"}', ["b", "c"]),
        ('cpu_temp{zone=~"eu"}', []),  # anchored: a partial match is no match
        ('{__name__="cpu_temp",host="c"}', ["c"]),
        ('{__name__=~"cpu_.*",host=~"a|b"}', ["a", "b"]),
        ('cpu_temp{missing=""}', ["a", "b", "c"]),  # absent label equals ""
        ("cpu_temp{host='a'}", ["a"]),
    ],
)
def test_matchers(loaded, selector, hosts):
    client, base = loaded
    r = q(client, query=selector, start=base, end=base + 60, step="60s")
    assert r.status_code == 200, r.json
    assert sorted(s["labels"]["host"] for s in r.json["series"]) == hosts


def test_group_by(loaded):
    client, base = loaded
    r = q(client, query="cpu_temp", start=base, end=base + 60, step="60s", agg="max", by="zone")
    groups = {s["labels"]["zone"]: s["points"] for s in r.json["series"]}
    assert groups == {"eu-1": [[base, 5]], "eu-2": [[base, 50]], "us-1": [[base, 500]]}
    r = q(client, query='cpu_temp{zone=~"eu.*"}', start=base, end=base + 60, step="60s", agg="sum", by="")
    assert r.json["series"] == [{"name": "cpu_temp", "labels": {}, "points": [[base, 15 + 150]]}]


def test_rate_for_counters_only(loaded):
    client, base = loaded
    r = q(client, query="reqs", start=base, end=base + 600, step="60s", agg="rate")
    assert r.status_code == 200
    assert r.json["tier"] == "raw"
    # Samples every 10 s from base, +5 each. The point at T covers (T - 60 s, T]:
    # base's window holds one sample (no point); every later one six, 25 over 50 s,
    # 10 s to the start (< 1.1 x 10 s): 25 * (50 + 10 + 0) / 50 / 60 = 0.5 per second.
    expected = [[base + 60 * k, 25 * (50 + 10 + 0) / 50 / 60] for k in range(1, 11)]
    assert rate_points(r) == approx_points(expected)
    body = assert_error(q(client, query="cpu_temp", agg="rate"), 400)
    assert body["parameter"] == "agg"


def rate_points(response) -> list[tuple[float, float]]:
    assert response.status_code == 200, response.json
    [series] = response.json["series"]
    return [(t, v) for t, v in series["points"]]


def approx_points(expected) -> list[tuple[float, object]]:
    """Times exact, values to floating-point precision."""
    return [(t, pytest.approx(v)) for t, v in expected]


def ingest_at(client, name, labels, samples, type_="counter"):
    metrics = [{"name": name, "labels": labels, "value": v, "timestamp": t, "type": type_}
               for t, v in samples]
    r = client.post("/api/ingest", json={"metrics": metrics})
    assert r.status_code == 200, r.json


@pytest.fixture
def bumpy_counter(client):
    """A 1/s counter sampled every 10 s at 5 s past: a gap, a restart, then it stops.

    Seconds after ``base``: 5..115 read 1000 + t; nothing from 120 to 300 (the
    counter keeps counting); 305..445 read 1000 + t; the process restarts at 450 and
    the counter starts again from 0, so 455..495 read t - 450; nothing after 495.
    """
    base = (int(time.time()) // HOUR - 2) * HOUR
    samples = ([(base + t, 1000.0 + t) for t in range(5, 120, 10)]
               + [(base + t, 1000.0 + t) for t in range(305, 450, 10)]
               + [(base + t, t - 450.0) for t in range(455, 500, 10)])
    ingest_at(client, "jobs_total", {"host": "a"}, samples)
    return client, base


def test_rate_with_gap_reset_and_partial_last_window(bumpy_counter):
    client, base = bumpy_counter
    # The range ends at base + 500, inside the window (480, 540]: like a range ending
    # now, the unfinished window is not evaluated; the newest point is a whole window.
    r = q(client, query="jobs_total", start=base, end=base + 500, step="60s", agg="rate")
    assert r.status_code == 200, r.json
    # 1 per second wherever a window holds six samples 5 s from each edge:
    # 50 * (50 + 5 + 5) / 50 / 60. The old code gave 4/s after the gap (240 over one step).
    steady = 50 * (50 + 5 + 5) / 50 / 60
    # (420, 480] holds 1425, 1435, 1445, 5, 15, 25: the drop is a reset, so the value
    # before it is added back: increase = 25 - 1425 + 1445 = 45.
    reset = (25 - 1425 + 1445) * (50 + 5 + 5) / 50 / 60
    expected = [[base + 60, steady], [base + 120, steady],  # 180, 240, 300: in the gap
                [base + 360, steady], [base + 420, steady], [base + 480, reset]]
    assert rate_points(r) == approx_points(expected)

    # A range ending on the grid at 540 evaluates (480, 540]: 35 and 45 at 485 and 495,
    # then nothing. The series stopped inside the window, so, as in Prometheus, it is
    # stretched by half an interval (5 s) past its last sample, not to the window's end
    # (45 s >= 1.1 x 10 s): 10 * (10 + 5 + 5) / 10 / 60.
    r = q(client, query="jobs_total", start=base + 480, end=base + 540, step="60s", agg="rate")
    assert rate_points(r) == approx_points(
        [[base + 480, reset], [base + 540, 10 * (10 + 5 + 5) / 10 / 60]])


def test_rate_reads_raw_samples_at_any_step(bumpy_counter, conn):
    """The rollups cannot give a rate (no first sample, no resets): rate reads raw."""
    client, base = bumpy_counter
    conn.execute("SELECT * FROM pgpulse_refresh_tiers('1 hour', '14 days', '90 days')")
    r = q(client, query="jobs_total", start=base, end=base + 600, step="5m", agg="rate")
    assert r.status_code == 200, r.json
    assert r.json["tier"] == "raw" and [t["tier"] for t in r.json["tiers"]] == ["raw"]
    # (0, 300]: 1005..1115, 110 over 110 s; 5 s to the start, 185 s to the end
    # (>= 1.1 x 10 s: stretched by half an interval): 110 * (110 + 5 + 5) / 110 / 300.
    # (300, 600]: 1305..1445 then 5..45: increase 45 - 1305 + 1445 over 190 s sampled,
    # 5 s to the start, 105 s to the end (so 5): (45 - 1305 + 1445) * 200 / 190 / 300.
    expected = [[base + 300, 110 * (110 + 5 + 5) / 110 / 300],
                [base + 600, (45 - 1305 + 1445) * (190 + 5 + 5) / 190 / 300]]
    assert rate_points(r) == approx_points(expected)
    # One window over the hour (the only multiple of 1 h in the range is base + 1 h):
    # every sample of (base, base + 3600], one reset.
    r = q(client, query="jobs_total", start=base + 1, end=base + HOUR, step="1h", agg="rate")
    assert r.json["tier"] == "raw"
    increase = 45 - 1005 + 1445
    # 490 s sampled over 32 samples (12 + 15 + 5): average 490 / 31 s; 5 s to the start;
    # 3105 s to the end, cut to half an average interval.
    average = 490 / 31
    assert rate_points(r) == approx_points(
        [[base + HOUR, increase * (490 + 5 + average / 2) / 490 / 3600]])


def test_rate_sums_across_grouped_series(bumpy_counter):
    client, base = bumpy_counter
    ingest_at(client, "jobs_total", {"host": "b"},
              [(base + t, 2.0 * t) for t in range(5, 120, 10)])  # 2/s
    r = q(client, query="jobs_total", start=base + 60, end=base + 120, step="60s", agg="rate",
          by="")
    # Like sum(rate(jobs_total[1m])): 1/s + 2/s in each window.
    steady = 50 * (50 + 5 + 5) / 50 / 60
    assert rate_points(r) == approx_points(
        [[base + 60, steady + 2 * steady], [base + 120, steady + 2 * steady]])


def test_alias_and_defaults(loaded):
    client, _base = loaded
    r = client.get("/v1/query?query=cpu_temp")
    assert r.status_code == 200
    assert r.json["end"] - r.json["start"] == pytest.approx(HOUR, abs=1)
    assert r.json["step"] == 10  # about 500 points over an hour, rounded to a nice step


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "query"),
        ({"query": "cpu_temp{"}, "query"),
        ({"query": 'cpu_temp{host=~"(a"}'}, "query"),
        ({"query": 'cpu_temp{host=~"a{2,1}"}'}, "query"),
        ({"query": "cpu_temp", "start": "yesterday"}, "start"),
        ({"query": "cpu_temp", "start": "200", "end": "100"}, "end"),
        ({"query": "cpu_temp", "step": "0s"}, "step"),
        ({"query": "cpu_temp", "step": "abc"}, "step"),
        ({"query": "cpu_temp", "agg": "median"}, "agg"),
        ({"query": "cpu_temp", "by": "a-b"}, "by"),
        ({"query": "cpu_temp", "start": "0", "end": "100000000"}, "start"),
        ({"query": "cpu_temp", "start": "0", "end": "86400", "step": "1s"}, "step"),
    ],
)
def test_bad_parameters_are_400(loaded, params, parameter):
    client, _ = loaded
    body = assert_error(q(client, **params), 400)
    assert body.get("parameter") == parameter, body


def test_points_limit(make_app):
    c = make_app(PROXY_MAX_POINTS="100").test_client()
    ingest(c, "m", {"i": "1"}, [1], time.time() - 10)
    ingest(c, "m", {"i": "2"}, [1], time.time() - 10)
    end = int(time.time())
    body = assert_error(q(c, query="m", start=end - 3600, end=end, step="60s"), 400)
    assert body["points"] == 120 and body["limit"] == 100
    assert q(c, query="m", start=end - 3600, end=end, step="120s").status_code == 200


@pytest.mark.engine("portable")  # fills the rollup tables at chosen times (pgpulse_refresh_tiers)
def test_query_across_tiers(make_app, conn):
    """Old data served by 5m and 1h rollups, recent data by raw, in one answer."""
    c = make_app(PROXY_MAX_POINTS_PER_SERIES="100000").test_client()
    ingest(c, "temp", {"host": "a"}, [1.0], time.time() - 60)
    sid = conn.execute("SELECT id FROM series").fetchone()[0]
    now = datetime.now(UTC)
    old = (now - timedelta(days=20)).replace(minute=0, second=0, microsecond=0)
    # 20 days ago (beyond the 14-day raw retention): one value per minute for 2 hours.
    conn.execute(
        "INSERT INTO samples (time, series_id, value) "
        "SELECT %s + g * interval '1 minute', %s, (g %% 10)::float8 FROM generate_series(0, 119) g",
        (old, sid),
    )
    conn.execute("SELECT * FROM pgpulse_refresh_tiers(interval '1 hour', interval '14 days', "
                 "interval '90 days', %s)", (old + timedelta(hours=3),))
    conn.execute("SELECT * FROM pgpulse_refresh_tiers(interval '1 hour', interval '14 days', "
                 "interval '90 days')")
    # Retention drops the old raw rows; the rollups still hold them.
    conn.execute("DELETE FROM samples WHERE time < %s", (now - timedelta(days=15),))

    start = (old - timedelta(hours=1)).timestamp()
    r = q(c, query="temp", start=start, end=now.timestamp(), step="60s", agg="avg")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["tier"] == "raw"
    assert [t["tier"] for t in body["tiers"]] == ["5m", "raw"]
    points = dict((int(t), v) for t, v in body["series"][0]["points"])
    # Buckets of 5 minutes of values g % 10: 0..4 -> 2.0, 5..9 -> 7.0.
    assert points[int(old.timestamp())] == 2.0
    assert points[int(old.timestamp()) + 300] == 7.0
    assert len(points) == 24 + 1  # the old 2 hours in 5m buckets, plus the recent sample

    r = q(c, query="temp", start=(now - timedelta(days=365)).timestamp(), end=now.timestamp(),
          step="1h", agg="max")
    assert r.json["tier"] == "1h"
    hourly = dict((int(t), v) for t, v in r.json["series"][0]["points"])
    assert hourly[int(old.timestamp())] == 9.0 and hourly[int(old.timestamp()) + 3600] == 9.0

    r = q(c, query="temp", start=start, end=(old + timedelta(hours=3)).timestamp(), step="10m",
          agg="count")
    assert r.json["tier"] == "5m"
    assert sum(v for _t, v in r.json["series"][0]["points"]) == 120


_selector_text = st.text(alphabet=st.sampled_from(list('abc_{}=~!",\'\\.*()[]|^$+?` ')), max_size=30)


# The app's connection pool runs background threads that use `random`; Hypothesis
# notices that while it generates examples and warns, though examples stay reproducible.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_any_selector_is_200_or_400(client):
    @settings(max_examples=80, deadline=None)
    @given(selector=st.one_of(_selector_text, st.text(max_size=30)))
    def check(selector):
        r = client.get("/api/query", query_string={"query": selector})
        assert r.status_code in (200, 400), (selector, r.data)
        if r.status_code == 400:
            assert isinstance(r.get_json()["error"], str)

    check()


def test_any_regex_in_matcher_is_200_or_400(client):
    @settings(max_examples=40, deadline=None)
    @given(regex=st.text(max_size=15))
    def check(regex):
        escaped = regex.replace("\\", "\\\\").replace('"', '\\"')
        r = client.get("/api/query", query_string={"query": f'm{{host=~"{escaped}"}}'})
        assert r.status_code in (200, 400), (regex, r.data)

    check()


def test_selector_matching_nothing_is_an_empty_answer_with_a_warning(loaded):
    client, base = loaded
    r = q(client, query='cpu_temp{host="nope"}', start=base, end=base + 600, step="60s")
    assert r.status_code == 200, r.json
    assert r.json["series"] == []
    [warning] = r.json["warnings"]
    assert "matches no series" in warning and 'cpu_temp{host="nope"}' in warning
    # A selector that matches, even with no points in the range, carries no warning.
    r = q(client, query='cpu_temp{host="a"}', start=base - 7200, end=base - 3600, step="60s")
    assert r.status_code == 200 and r.json["series"] == [] and "warnings" not in r.json


def test_misspelt_parameter_is_a_400_not_the_default(loaded):
    client, base = loaded
    body = assert_error(q(client, query="cpu_temp", start=base, end=base + 600, stpe="5m"), 400)
    assert body["parameter"] == "stpe" and "step" in body["known"]
    assert "'stpe'" in body["error"] and "step" in body["error"]


@pytest.mark.parametrize("step", [60, 300])
def test_rate_is_promql_rate_over_the_step(client, step):
    """agg=rate is PromQL's rate(x[step]) at each multiple of the step: samples exactly
    on the grid count in both windows they close and open ([T - step, T]), a counter
    starting near zero is clamped at its zero point, resets and gaps as PromQL."""
    base = (int(time.time()) // HOUR - 2) * HOUR
    on_grid = [(base + t, 2.0 + 0.5 * t) for t in range(0, 1800, 30)]  # every 60 s on the grid
    on_grid += [(base + t, 0.25 * (t - 1800)) for t in range(1800, 3600, 20)]  # a reset at 1800
    jitter = [(base + t + 0.125, 3.0 + t) for t in range(0, 1200, 15)]
    jitter += [(base + t + 0.125, 3.0 + t) for t in range(2400, 3600, 15)]  # a 20-minute gap
    ingest_at(client, "grid_total", {"k": "grid"}, on_grid)
    ingest_at(client, "grid_total", {"k": "jitter"}, jitter)
    native = q(client, query="grid_total", start=base, end=base + HOUR, step=f"{step}s", agg="rate")
    assert native.status_code == 200, native.json
    promql = client.get("/api/v1/query_range", query_string={
        "query": f"rate(grid_total[{step}s])", "start": base, "end": base + HOUR, "step": step})
    assert promql.status_code == 200, promql.json
    expected = {s["metric"]["k"]: [(t, float(v)) for t, v in s["values"]]
                for s in promql.json["data"]["result"]}
    got = {s["labels"]["k"]: [(t, v) for t, v in s["points"]] for s in native.json["series"]}
    assert sorted(got) == sorted(expected) == ["grid", "jitter"]
    for k, points in expected.items():
        assert [t for t, _ in got[k]] == [t for t, _ in points], k
        assert [v for _, v in got[k]] == pytest.approx([v for _, v in points], rel=1e-12), k
