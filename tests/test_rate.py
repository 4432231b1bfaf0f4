"""pgpulse.promrate: Prometheus's rate(), checked against values worked out by hand.

The functions are pure: no database but for the last tests. Times are integer microseconds; S is one
second. Every expected value is written as the arithmetic of Prometheus's
extrapolatedRate: increase * (sampled + to_start + to_end) / sampled / window.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from polling import wait_for

from pgpulse.promrate import US_PER_S as S
from pgpulse.promrate import extrapolated_rate, rates, window_ends
from pgpulse.reads import ReadError, read_host_field
from pgpulse.tiers import Retention

MIN = 60 * S


def counter(times_s, value_at):
    """Samples at ``times_s`` (seconds) whose value is ``value_at(t)``."""
    return [(t * S, float(value_at(t))) for t in times_s]


def test_steady_counter_fills_its_window():
    # 1/s counter sampled every 10 s at 5, 15, ..., 55 inside (0, 60]:
    # increase 50 over 50 s sampled; 5 s to each edge (< 1.1 x 10 s), so the rate is
    # stretched to the whole window: 50 * (50 + 5 + 5) / 50 / 60 = 1.
    samples = counter(range(5, 60, 10), lambda t: 1000 + t)
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(50 * (50 + 5 + 5) / 50 / 60)
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(1.0)


def test_gap_is_divided_by_time_not_counted_as_steps():
    # The case: a steady 1/s counter with no samples for 3 minutes. The old
    # code divided the 240 counted over 4 minutes by one 60 s step (4/s). Windows in the
    # gap have no point; those around it measure 1/s.
    before = range(5, 120, 10)  # 5 .. 115
    after = range(305, 420, 10)  # 305 .. 415, the counter counted through the gap
    samples = counter([*before, *after], lambda t: 1000 + t)
    points = rates(samples, MIN, MIN, 7 * MIN)
    assert [t // S for t, _ in points] == [60, 120, 360, 420]  # 180, 240 and 300: empty
    assert [r for _, r in points] == pytest.approx([1.0] * 4)


def test_one_sample_gives_no_point():
    samples = counter([5, 65, 75], lambda t: t)
    # (0, 60] holds one sample; (60, 120] holds two: 10 over 10 s, stretched by half
    # an interval at each end (55 and 45 s to the edges are >= 1.1 x 10 s), and the
    # counter, at 65 with slope 1, is nowhere near zero: 10 * (10 + 5 + 5) / 10 / 60.
    assert rates(samples, MIN, MIN, 2 * MIN) == [(2 * MIN, pytest.approx(10 * (10 + 5 + 5) / 10 / 60))]
    assert extrapolated_rate(samples[:1], 0, MIN) is None
    assert extrapolated_rate([], 0, MIN) is None
    # Two samples at one time span no interval.
    assert extrapolated_rate([(5 * S, 1.0), (5 * S, 2.0)], 0, MIN) is None


def test_counter_reset_inside_a_window():
    # 1/s from 1425 at 25 s; the process restarts at 50 s and the counter starts again
    # from 0, so 55 s reads 5. Prometheus adds the value before each drop back:
    # increase = (25 - 1425) + 1445 = 45 (20 before the reset, 5 + 20 after it; the
    # 5 between 45 s and the restart are lost, as in Prometheus).
    samples = [(25 * S, 1425.0), (35 * S, 1435.0), (45 * S, 1445.0),
               (55 * S, 5.0), (65 * S, 15.0), (75 * S, 25.0)]
    increase = (25 - 1425) + 1445
    # Window (20, 80]: 5 s to each edge, 50 s sampled.
    assert extrapolated_rate(samples, 20 * S, 80 * S) == pytest.approx(increase * (50 + 5 + 5) / 50 / 60)


def test_two_resets():
    samples = [(5 * S, 10.0), (15 * S, 20.0), (25 * S, 3.0), (35 * S, 8.0), (45 * S, 2.0), (55 * S, 4.0)]
    # increase = (4 - 10) + 20 + 8 = 22; 5 s to each edge; the zero point,
    # 50 * 10 / 22 s before the first sample, is further than 5 s.
    increase = (4 - 10) + 20 + 8
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(increase * (50 + 5 + 5) / 50 / 60)


def test_series_that_starts_inside_the_window_is_stretched_by_half_an_interval():
    # Samples from 35 s on: 35 s to the start is >= 1.1 x 10 s, so the series is taken
    # to start inside the window, half an interval (5 s) before its first sample.
    samples = counter([35, 45, 55], lambda t: 1000 + t)
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(20 * (20 + 5 + 5) / 20 / 60)


def test_extrapolation_stops_where_the_counter_was_zero():
    # A counter created at 2 s, 1/s: 3 at 5 s, ..., 53 at 55 s. 5 s to the start would
    # be stretched to the edge, but followed back at its slope the counter was zero
    # 50 * 3 / 50 = 3 s before its first sample, so the start is stretched by 3 s only.
    samples = counter(range(5, 60, 10), lambda t: t - 2)
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(50 * (50 + 3 + 5) / 50 / 60)
    # Starting at exactly 0, it is not stretched back at all.
    from_zero = counter(range(5, 60, 10), lambda t: t - 5)
    assert extrapolated_rate(from_zero, 0, MIN) == pytest.approx(50 * (50 + 0 + 5) / 50 / 60)


def test_half_interval_comes_before_the_zero_point():
    # Prometheus 3 order: a start too far to reach (40 s >= 1.1 x 10 s) is first cut to
    # half an interval (5 s); the zero point (20 * 7 / 20 = 7 s back) is further, so 5 s
    # stays. (Prometheus 2 took the zero point first and would stretch by 7 s.)
    samples = [(40 * S, 7.0), (50 * S, 17.0), (60 * S, 27.0)]
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(20 * (20 + 5 + 0) / 20 / 60)


def test_negative_first_value_has_no_zero_point():
    # Prometheus only looks for the zero point of a counter whose first value is >= 0.
    samples = counter(range(5, 60, 10), lambda t: t - 10)  # -5 at 5 s
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(50 * (50 + 5 + 5) / 50 / 60)


def test_irregular_intervals_use_the_average():
    # Samples at 2, 10, 50 s: average interval (50 - 2) / 2 = 24 s, threshold 26.4 s.
    # 2 s to the start and 10 s to the end are both under it: stretched to the edges.
    samples = [(2 * S, 1002.0), (10 * S, 1010.0), (50 * S, 1050.0)]
    assert extrapolated_rate(samples, 0, MIN) == pytest.approx(48 * (48 + 2 + 10) / 48 / 60)


def test_windows_are_left_open_and_right_closed():
    # A sample exactly at T belongs to the window ending at T, not to the next one.
    samples = counter([0, 30, 60, 90, 120], lambda t: t)
    points = dict(rates(samples, MIN, MIN, 2 * MIN))
    # (0, 60] holds 30 and 60: 30 over 30 s; 30 s to the start is < 1.1 x 30 s, but the
    # zero point (30 * 30 / 30 = 30 s back) is no nearer, so: 30 * (30 + 30 + 0) / 30 / 60.
    assert points[MIN] == pytest.approx(30 * (30 + 30 + 0) / 30 / 60)
    # (60, 120] holds 90 and 120, not 60.
    assert points[2 * MIN] == pytest.approx(30 * (30 + 30 + 0) / 30 / 60)


def test_the_range_ends_at_the_last_whole_window():
    # A range ending at 170 s (now, say): the grid points in [0, 170] are 0, 60, 120.
    # The unfinished window (120, 180] is not evaluated, so the newest point is a whole
    # window and reads the true 1/s: no dip at the right edge (the old code reported the
    # 50 s of the unfinished bucket over a 60 s step).
    assert window_ends(0, 170 * S, MIN) == (0, 2 * MIN)
    samples = counter(range(5, 170, 10), lambda t: 1000 + t)
    first, last = window_ends(0, 170 * S, MIN)
    points = rates(samples, MIN, first, last)
    assert [t for t, _ in points] == [MIN, 2 * MIN]  # (-60, 0] is empty
    assert [r for _, r in points] == pytest.approx([1.0, 1.0])


def test_window_ends_follow_the_epoch_grid():
    assert window_ends(1 * S, 59 * S, MIN) is None  # no multiple of 60 s in [1, 59]
    assert window_ends(60 * S, 60 * S, MIN) == (MIN, MIN)
    assert window_ends(61 * S, 300 * S, MIN) == (2 * MIN, 5 * MIN)
    assert window_ends(-61 * S, 0, MIN) == (-MIN, 0)
    with pytest.raises(ValueError, match="step"):
        window_ends(0, MIN, 0)
    with pytest.raises(ValueError, match="step"):
        rates([], 0, 0, MIN)


def test_samples_outside_the_range_are_ignored():
    samples = counter(range(-55, 240, 10), lambda t: 1000 + t)
    points = rates(samples, MIN, MIN, 2 * MIN)
    assert [t for t, _ in points] == [MIN, 2 * MIN]


def test_sub_second_step():
    # 500 ms windows of a counter sampled every 100 ms at 10/s, offset 50 ms: each
    # window (T - 0.5 s, T] holds 5 samples, 0.4 s sampled, 0.05 s to each edge.
    ms = S // 1000
    samples = [(50 * ms + i * 100 * ms, 100 + i * 1.0) for i in range(20)]
    points = rates(samples, 500 * ms, 500 * ms, 2 * S)
    assert [t for t, _ in points] == [500 * ms, S, 1500 * ms, 2 * S]
    assert [r for _, r in points] == pytest.approx([4 * (0.4 + 0.05 + 0.05) / 0.4 / 0.5] * 4)


def test_host_fields_have_no_rate(conn):
    # Host fields are gauges (and already per-second where they are rates).
    now = datetime.now(UTC)
    with pytest.raises(ReadError, match="gauges"):
        read_host_field(conn, None, "load1", now - timedelta(hours=1), now, timedelta(minutes=1), "rate",
                        Retention(raw=timedelta(days=1), m5=timedelta(days=3), h1=timedelta(days=10)), tenant="default")


# --- Against Prometheus itself -------------------------------------------------------
#
# The same samples are loaded into pgpulse (through /api/ingest) and into a Prometheus
# TSDB (promtool tsdb create-blocks-from openmetrics), and /api/query?agg=rate must give
# what Prometheus's own range query of rate(x[step]) gives. Debian's prometheus is 2.x:
# its windows are closed ([T - step, T]) where Prometheus 3's are left-open, and it
# applies the zero point before the half-interval cut. The data keep clear of both
# differences: no sample lies on a multiple of the step (every time ends in .25 or .75 s),
# and counters stay far from zero compared with their slope. The data are fixed relative
# to an hour boundary, so every run compares the same windows.


def _comparison_samples() -> dict[str, list[tuple[float, float]]]:
    """Seconds after the hour -> value, per host: jitter, a gap, resets, sparse samples."""
    a, value = [], 1000.0
    for k in range(350):
        if 40 <= k < 58:  # three minutes without samples; the counter keeps counting
            value += 10
            continue
        value = {100: 50.0, 200: 80.0}.get(k, value + 5 + (k * 3) % 11)  # restarts at k 100, 200
        a.append((3.25 + 10 * k + ((k * 7) % 5 - 2) * 0.5, value))
    b = [(7.75 + 15 * k, 5000.0 + 30 * k if k < 120 else 200.0 + 30 * (k - 120)) for k in range(230)]
    c = [(20.25 + 45 * k, 300.0 + 45 * k) for k in range(78)]  # one or two per minute
    return {"a": a, "b": b, "c": c}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install prometheus; .ci/run does it)"
    return path


def _prometheus_range(tmp_path, base: int, series, step: int, end: int) -> dict[str, list]:
    """rate(jobs_total[step]) from base to end by Prometheus, per host."""
    text = "".join(f'jobs_total{{host="{host}"}} {v} {base + t:.3f}\n'
                   for host, samples in series.items() for t, v in samples) + "# EOF\n"
    (tmp_path / "data.om").write_text(text)
    data = tmp_path / "tsdb"
    subprocess.run([_tool("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                    str(tmp_path / "data.om"), str(data)], check=True, capture_output=True, timeout=120)
    (tmp_path / "prometheus.yml").write_text("global: {}\n")
    log = (tmp_path / "prometheus.log").open("wb")
    port = _free_port()
    proc = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=10) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, 60, "Prometheus to be ready")
        query = urllib.parse.urlencode({"query": f"rate(jobs_total[{step}s])", "start": base,
                                        "end": end, "step": step})
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=60) as r:
            body = json.load(r)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert body["status"] == "success", body
    return {s["metric"]["host"]: [(t, float(v)) for t, v in s["values"]] for s in body["data"]["result"]}


@pytest.mark.parametrize("step", [60, 300])
def test_same_answer_as_prometheus(client, tmp_path, step):
    base = (int(time.time()) // 3600 - 2) * 3600
    series = _comparison_samples()
    for host, samples in series.items():
        r = client.post("/api/ingest", json={"metrics": [
            {"name": "jobs_total", "labels": {"host": host}, "type": "counter", "value": v,
             "timestamp": base + t} for t, v in samples]})
        assert r.status_code == 200, r.json
    end = base + 3600
    expected = _prometheus_range(tmp_path, base, series, step, end)
    r = client.get("/api/query", query_string={"query": "jobs_total", "start": base, "end": end,
                                               "step": f"{step}s", "agg": "rate"})
    assert r.status_code == 200, r.json
    got = {s["labels"]["host"]: [(t, v) for t, v in s["points"]] for s in r.json["series"]}
    assert sorted(got) == sorted(expected) == ["a", "b", "c"]
    for host, points in expected.items():
        assert [t for t, _ in got[host]] == [t for t, _ in points], host
        assert [v for _, v in got[host]] == pytest.approx([v for _, v in points], rel=1e-9), host
