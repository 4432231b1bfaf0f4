"""Counter rate as Prometheus's ``rate()`` computes it: one definition, pure.

``extrapolated_rate`` is the per-second increase of a counter over one window, from
the samples inside it, following Prometheus's ``extrapolatedRate``
(promql/functions.go): the increase from the first to the last sample, plus the
value before every drop (a drop is a counter reset: the counter started again from
zero), stretched from the sampled interval to the window's edges, and divided by the
window's length. ``rates`` evaluates it at every step of a range, as a Prometheus
range query evaluates ``rate(x[step])``.

Nothing here touches a database: pgpulse.reads feeds it raw samples, and a PromQL
evaluator can feed it a range vector.

Times are integer microseconds since the Unix epoch (PostgreSQL's resolution), so
which window a sample falls in is decided exactly, never by floating-point
rounding. Prometheus's millisecond timestamps are the same times times 1000.
"""

from __future__ import annotations

from collections.abc import Sequence

US_PER_S = 1_000_000

Sample = tuple[int, float]  # (microseconds since the epoch, value)


def extrapolated_rate(samples: Sequence[Sample], window_start: int, window_end: int) -> float | None:
    """Per-second increase of a counter over the window ``(window_start, window_end]``.

    ``samples`` are the samples inside the window, oldest first. ``None`` (no value,
    as Prometheus returns no sample) when there are fewer than two, or when they
    share one time and so span no interval to measure.

    Extrapolation, exactly as Prometheus does it: each end of the sampled interval is
    stretched to the window's edge when the gap to that edge is less than 1.1 times
    the average interval between the samples (the series is taken to cover the
    window); otherwise by half an average interval (the series is taken to start or
    stop inside the window). At the start, never past the time where the counter,
    followed back at its average slope, would have been zero.
    """
    if len(samples) < 2:
        return None
    (first_t, first_v), (last_t, last_v) = samples[0], samples[-1]
    if last_t == first_t:
        return None
    increase = last_v - first_v
    for (_, prev), (_, cur) in zip(samples, samples[1:], strict=False):
        if cur < prev:
            # A reset: the counter went back to zero and counted ``cur`` since, so the
            # increase up to the reset (``prev``) is added back.
            increase += prev

    sampled = (last_t - first_t) / US_PER_S
    average = sampled / (len(samples) - 1)
    threshold = average * 1.1
    to_start = (first_t - window_start) / US_PER_S
    to_end = (window_end - last_t) / US_PER_S
    if to_start >= threshold:
        to_start = average / 2
    if increase > 0 and first_v >= 0:
        # A counter cannot have been below zero: stop where it would have been zero.
        to_start = min(to_start, sampled * (first_v / increase))
    if to_end >= threshold:
        to_end = average / 2
    window = (window_end - window_start) / US_PER_S
    return increase * (sampled + to_start + to_end) / sampled / window


def window_ends(start: int, end: int, step: int) -> tuple[int, int] | None:
    """The first and last multiples of ``step`` in ``[start, end]`` (None if there are none).

    These are the times a rate over ``start``..``end`` is evaluated at: the step grid
    counted from the Unix epoch, like every other pgpulse bucket.
    """
    if step <= 0:
        raise ValueError("step must be positive")
    first = -(-start // step) * step  # ceiling to the grid
    last = (end // step) * step
    return (first, last) if first <= last else None


def rates(samples: Sequence[Sample], step: int, first_end: int, last_end: int) -> list[tuple[int, float]]:
    """``rate(x[step])`` at every ``T = first_end, first_end + step, ... <= last_end``.

    Each ``T`` covers the window ``(T - step, T]``, left-open as in Prometheus 3, so
    every sample falls in exactly one window. ``samples`` are oldest first; samples
    outside ``(first_end - step, last_end]`` are ignored. A window holding fewer than
    two samples gives no point. Points are ``(T, rate)``, oldest first.
    """
    if step <= 0:
        raise ValueError("step must be positive")
    out: list[tuple[int, float]] = []
    window: list[Sample] = []
    current = None  # the end of the window being filled
    for t, v in samples:
        if t <= first_end - step or t > last_end:
            continue
        end = first_end + -(-(t - first_end) // step) * step  # the T with T - step < t <= T
        if end != current:
            _emit(out, window, current, step)
            window, current = [], end
        window.append((t, v))
    _emit(out, window, current, step)
    return out


def _emit(out: list[tuple[int, float]], window: list[Sample], end: int | None, step: int) -> None:
    if end is None:
        return
    value = extrapolated_rate(window, end - step, end)
    if value is not None:
        out.append((end, value))
