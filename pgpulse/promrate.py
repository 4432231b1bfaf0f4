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
    return extrapolate([t for t, _ in samples], [v for _, v in samples], window_start, window_end,
                       counter=True, per_second=True, unit=US_PER_S, zero_clamp_first=False)


def extrapolate(times: Sequence[int], values: Sequence[float], window_start: int, window_end: int,
                *, counter: bool, per_second: bool, unit: int, zero_clamp_first: bool
                ) -> float | None:
    """Prometheus's extrapolatedRate: ``rate`` (counter, per second), ``increase``
    (counter) and ``delta`` (neither) of the samples in one window.

    ``unit``: time units per second (1000 for PromQL's milliseconds).
    ``zero_clamp_first``: where the start is clamped at the counter's zero point.
    Prometheus 2.x clamps first and then compares the gap with the extrapolation
    threshold (PromQL here answers as 2.42 does); Prometheus 3 compares first and
    clamps the result (the native API's ``agg=rate``, :func:`extrapolated_rate`).
    """
    if len(values) < 2:
        return None
    first_t, last_t = times[0], times[-1]
    if last_t == first_t:
        return None
    first_v = values[0]
    increase = values[-1] - first_v
    if counter:
        prev = first_v
        for cur in values[1:]:
            if cur < prev:
                # A reset: the counter went back to zero and counted ``cur`` since, so
                # the increase up to the reset (``prev``) is added back.
                increase += prev
            prev = cur

    sampled = (last_t - first_t) / unit
    average = sampled / (len(values) - 1)
    threshold = average * 1.1
    to_start = (first_t - window_start) / unit
    to_end = (window_end - last_t) / unit
    clamp = counter and increase > 0 and first_v >= 0
    if zero_clamp_first and clamp:
        # A counter cannot have been below zero: stop where it would have been zero.
        to_start = min(to_start, sampled * (first_v / increase))
    if zero_clamp_first:
        interval = sampled + (to_start if to_start < threshold else average / 2)
        interval += to_end if to_end < threshold else average / 2
        factor = interval / sampled
        if per_second:
            factor /= (window_end - window_start) / unit
        return increase * factor
    if to_start >= threshold:
        to_start = average / 2
    if clamp:
        to_start = min(to_start, sampled * (first_v / increase))
    if to_end >= threshold:
        to_end = average / 2
    window = (window_end - window_start) / unit
    if not per_second:
        return increase * (sampled + to_start + to_end) / sampled
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
