"""Counter rates of the collector: per second between two samples, starting over
when a counter goes backwards (reboot, wrap), never negative."""

from __future__ import annotations

from collections import namedtuple

import pytest

from collector.probes import cpu_shares
from collector.rates import Rates, total


def test_first_reading_has_no_rate_then_rate_per_second():
    rates = Rates()
    rates.begin(None)
    assert rates.rate("rx", 1000) is None
    rates.end()
    rates.begin(10.0)
    assert rates.rate("rx", 6000) == pytest.approx(500.0)
    rates.end()


def test_counter_going_backwards_starts_over():
    rates = Rates()
    rates.begin(None)
    rates.rate("rx", 10_000)
    rates.begin(5.0)
    assert rates.rate("rx", 12_000) == pytest.approx(400.0)
    rates.begin(5.0)
    # A reboot or a 32-bit wrap: no rate for this interval, not a negative one...
    assert rates.rate("rx", 300) is None
    rates.begin(5.0)
    # ...and the low reading is the new baseline.
    assert rates.rate("rx", 800) == pytest.approx(100.0)


def test_unchanged_counter_is_zero_not_unknown():
    rates = Rates()
    rates.begin(None)
    rates.rate("x", 5)
    rates.begin(2.0)
    assert rates.rate("x", 5) == 0.0


def test_counters_not_read_are_forgotten():
    rates = Rates()
    rates.begin(None)
    rates.rate(("net", "veth1"), 100)
    rates.rate(("net", "eth0"), 100)
    rates.end()
    rates.begin(1.0)
    rates.rate(("net", "eth0"), 200)
    rates.end()  # veth1 went away
    rates.begin(1.0)
    # It comes back with a fresh counter: a first reading again, not a rate.
    assert rates.rate(("net", "veth1"), 5000) is None
    assert rates.rate(("net", "eth0"), 300) == pytest.approx(100.0)


def test_zero_or_unknown_elapsed_gives_no_rate():
    rates = Rates()
    rates.begin(None)
    rates.rate("x", 1)
    rates.begin(0.0)
    assert rates.rate("x", 2) is None


def test_total_of_known_rates():
    assert total([1.0, None, 2.5]) == pytest.approx(3.5)
    assert total([None, None]) is None
    assert total([]) is None


Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_cpu_shares_between_two_readings():
    before = Times(100, 0, 50, 800, 30, 0, 10, 10, 0, 0)
    after = Times(130, 0, 60, 850, 35, 0, 10, 15, 0, 0)  # 100 ticks in all
    shares = cpu_shares(before, after)
    assert shares["percent"] == pytest.approx(45.0)
    assert shares["user"] == pytest.approx(30.0)
    assert shares["system"] == pytest.approx(10.0)
    assert shares["iowait"] == pytest.approx(5.0)
    assert shares["steal"] == pytest.approx(5.0)


def test_cpu_shares_start_over_after_reboot():
    before = Times(10_000, 0, 5000, 80_000, 300, 0, 100, 100, 0, 0)
    after = Times(10, 0, 5, 80, 1, 0, 0, 0, 0, 0)
    assert cpu_shares(before, after) is None


def test_cpu_state_dipping_counts_as_zero():
    # iowait is known to dip on NO_HZ kernels: no negative share, no reset.
    before = Times(100, 0, 50, 800, 30, 0, 0, 0, 0, 0)
    after = Times(150, 0, 50, 850, 29, 0, 0, 0, 0, 0)
    shares = cpu_shares(before, after)
    assert shares["iowait"] == 0.0
    assert shares["percent"] == pytest.approx(50.0)
