"""The load generator's schedule (pgpulse/loadgen/schedule.py) on a fake clock:
rates, durations, patterns, weights and the error ratio, without waiting."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest

from pgpulse.loadgen.schedule import (
    BAD_REQUESTS,
    DEMO_ENDPOINTS,
    Endpoint,
    Pattern,
    Picker,
    Tally,
    arrivals,
    run,
)


class FakeClock:
    """Time moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "slept for nothing"
        self.slept.append(seconds)
        self.t += seconds


def collect(pattern: Pattern, duration: float, *, poisson: bool, seed: int = 7):
    """Run the schedule on a fake clock; the seconds since the start of each send."""
    clock = FakeClock()
    start = clock.t
    sent: list[float] = []
    seconds = run(arrivals(pattern, random.Random(seed), poisson=poisson), lambda: None,
                  lambda _: sent.append(clock.t - start), clock, duration=duration)
    return sent, seconds


def test_even_arrivals_keep_the_rate_and_the_duration():
    sent, seconds = collect(Pattern("steady", 20), 30, poisson=False)
    assert len(sent) == 600
    assert seconds == pytest.approx(30)
    gaps = {round(b - a, 9) for a, b in zip(sent, sent[1:], strict=False)}
    assert gaps == {0.05}


def test_each_request_is_sent_when_due_never_before():
    clock = FakeClock()
    start = clock.t
    due = iter([0.0, 0.5, 0.5, 2.25, 9.0])
    sent: list[float] = []
    seconds = run(due, lambda: None, lambda _: sent.append(clock.t - start), clock, duration=5)
    assert sent == pytest.approx([0.0, 0.5, 0.5, 2.25])
    assert seconds == pytest.approx(5)  # waits out the gap after the last send


def test_poisson_arrivals_average_the_rate():
    sent, _ = collect(Pattern("steady", 50), 200, poisson=True)
    # 10,000 expected; a Poisson count's standard deviation is 100.
    assert 9_600 < len(sent) < 10_400
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert len(set(round(g, 6) for g in gaps)) > 1000  # not evenly spaced


def test_the_seed_repeats_a_run():
    assert collect(Pattern("bursts", 5), 100, poisson=True, seed=3)[0] == \
        collect(Pattern("bursts", 5), 100, poisson=True, seed=3)[0]
    assert collect(Pattern("bursts", 5), 100, poisson=True, seed=3)[0] != \
        collect(Pattern("bursts", 5), 100, poisson=True, seed=4)[0]


@pytest.mark.parametrize("poisson", [False, True])
def test_bursts_multiply_the_rate_while_they_last(poisson):
    pattern = Pattern("bursts", 10, burst_every=60, burst_length=10, burst_factor=5)
    sent, _ = collect(pattern, 600, poisson=poisson)
    in_burst = [t for t in sent if t % 60 >= 50]
    calm = [t for t in sent if t % 60 < 50]
    # 10 bursts of 10 s at 50/s, 10 x 50 s at 10/s.
    if poisson:
        assert 4_600 < len(in_burst) < 5_400 and 4_600 < len(calm) < 5_400
    else:
        # At most a request or two lost at each change of rate.
        assert abs(len(in_burst) - 5_000) <= 20 and abs(len(calm) - 5_000) <= 20
    assert pattern.rate_at(55) == 50 and pattern.rate_at(5) == 10


def test_wave_swings_around_the_rate():
    pattern = Pattern("wave", 20, wave_period=100, wave_depth=0.5)
    sent, _ = collect(pattern, 1000, poisson=False)
    assert abs(len(sent) - 20_000) <= 20  # the sine averages out over whole periods
    by_phase = Counter(int(t % 100 // 25) for t in sent)
    # First quarter of each period above the mean, third quarter below it.
    assert by_phase[0] > 1.5 * by_phase[2]
    assert pattern.rate_at(25) == pytest.approx(30) and pattern.rate_at(75) == pytest.approx(10)


def test_no_duration_runs_until_stopped():
    clock = FakeClock()
    stop = threading.Event()
    sent: list[int] = []

    def send(_):
        sent.append(1)
        if len(sent) == 250:
            stop.set()

    run(arrivals(Pattern("steady", 100), random.Random(1), poisson=False), lambda: None, send, clock,
        duration=None, stop=stop)
    assert len(sent) == 250


def test_progress_is_reported_on_time_even_across_long_gaps():
    clock = FakeClock()
    seen: list[float] = []
    run(iter([0.0, 35.0]), lambda: None, lambda _: None, clock, duration=40,
        progress=seen.append, progress_every=10)
    assert [round(t) for t in seen] == [10, 20, 30]


def test_weights_share_the_traffic():
    picker = Picker(DEMO_ENDPOINTS, random.Random(11))
    counts = Counter(picker.pick().endpoint for _ in range(50_000))
    total_weight = sum(e.weight for e in DEMO_ENDPOINTS)
    for e in DEMO_ENDPOINTS:
        share = counts[f"{e.method} {e.path}"] / 50_000
        assert share == pytest.approx(e.weight / total_weight, abs=0.01), e


def test_paths_and_bodies_are_filled_per_request():
    picker = Picker([Endpoint("GET", "/api/items/{id}", 1), Endpoint("GET", "/api/search?q={word}", 1),
                     Endpoint("POST", "/api/orders", 1, {"item_id": "{id}", "quantity": 1})],
                    random.Random(5))
    requests = [picker.pick() for _ in range(300)]
    ids = {int(r.path.rsplit("/", 1)[1]) for r in requests if r.path.startswith("/api/items/")}
    assert len(ids) > 50 and all(1 <= i <= 1000 for i in ids)
    assert all("{" not in r.path for r in requests)
    orders = [r for r in requests if r.method == "POST"]
    assert orders and all(isinstance(r.body["item_id"], int) for r in orders)


def test_error_ratio_sends_bad_requests_at_that_share():
    picker = Picker(DEMO_ENDPOINTS, random.Random(2), error_ratio=0.1)
    requests = [picker.pick() for _ in range(20_000)]
    bad = [r for r in requests if r.bad]
    assert len(bad) / len(requests) == pytest.approx(0.1, abs=0.01)
    assert {r.endpoint for r in bad} == {f"{e.method} {e.path}" for e in BAD_REQUESTS}
    assert all(int(r.path.rsplit("/", 1)[1]) > 1000 for r in bad if r.path.startswith("/api/items/"))
    assert not any(r.bad for r in (Picker(DEMO_ENDPOINTS, random.Random(2)).pick() for _ in range(2000)))


@pytest.mark.parametrize(("text", "expected"), [
    ("GET /api/items=50", Endpoint("GET", "/api/items", 50.0)),
    ("post /api/orders=2.5", Endpoint("POST", "/api/orders", 2.5, {"item_id": "{id}", "quantity": 1})),
    ("GET /a?x=1=3", Endpoint("GET", "/a?x=1", 3.0)),
])
def test_endpoint_specs(text, expected):
    assert Endpoint.parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("/api/items=5", "expected 'METHOD /path=WEIGHT'"),
    ("GET /api/items", "expected 'METHOD /path=WEIGHT'"),
    ("GET /api/items=lots", "is not a number"),
    ("GET /api/items=0", "must be > 0"),
])
def test_bad_endpoint_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        Endpoint.parse(text)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "zigzag"}, "unknown pattern"),
    ({"rate": 0}, "rate must be"),
    ({"kind": "bursts", "burst_length": 70}, "a burst lasts"),
    ({"kind": "bursts", "burst_factor": 0.5}, "burst factor"),
    ({"kind": "wave", "wave_depth": 1.5}, "wave depth"),
])
def test_bad_patterns_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Pattern(**kwargs)


def test_tally_summarises_answers():
    tally = Tally()
    for i in range(100):
        tally.record_sent("GET /a", samples=10)
        tally.record_answer(200 if i < 90 else (500 if i < 98 else 0), (i + 1) / 1000, samples=10,
                            failure="ConnectionError" if i >= 98 else None)
    tally.record_skipped()
    s = tally.summary(10.0)
    assert s["sent"] == 100 and s["skipped"] == 1 and s["rate"] == 10.0
    assert s["by_status"] == {"0": 2, "200": 90, "500": 8}
    assert s["by_class"] == {"2xx": 90, "5xx": 8, "error": 2}
    assert (s["samples_sent"], s["samples_accepted"]) == (1000, 900)
    assert (s["latency_p50"], s["latency_p95"], s["latency_p99"]) == (0.05, 0.095, 0.099)
    assert s["failures"] == {"ConnectionError": 2}
    assert "5xx=8" in tally.progress_line(10.0)
