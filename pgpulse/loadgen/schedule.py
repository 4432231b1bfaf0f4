"""When the load generator sends what: rates, patterns, weighted endpoints, the tally.

Pure logic. Time comes from an injected :class:`Clock` and requests go to an injected
sender (a callable), so the whole schedule runs on a fake clock in tests and on the
real one (:class:`SystemClock`) in ``pgpulse loadgen``.

The load is *open*: requests are due at arrival times drawn from the pattern's rate,
whatever the answers take, as real users arrive. A sender that cannot keep up says
so (it counts the request as skipped) instead of silently lowering the rate.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

PATTERNS = ("steady", "bursts", "wave")


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds (only differences matter)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or less when stopped early)."""


class SystemClock:
    """The real clock; ``sleep`` returns early once ``stop`` is set."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)


# -- the rate over time ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pattern:
    """Requests per second as a function of the seconds since the start.

    * ``steady``: ``rate`` throughout;
    * ``bursts``: ``rate``, and every ``burst_every`` seconds a burst of
      ``burst_length`` seconds at ``rate * burst_factor`` (a flash crowd, a retry storm);
    * ``wave``: a sine of period ``wave_period`` between ``rate * (1 - wave_depth)``
      and ``rate * (1 + wave_depth)`` (a day's traffic, compressed).
    """

    kind: str = "steady"
    rate: float = 10.0
    burst_every: float = 60.0
    burst_length: float = 10.0
    burst_factor: float = 4.0
    wave_period: float = 300.0
    wave_depth: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in PATTERNS:
            raise ValueError(f"unknown pattern {self.kind!r}: expected one of {', '.join(PATTERNS)}")
        if not self.rate > 0 or math.isinf(self.rate):
            raise ValueError(f"rate must be a number > 0, got {self.rate}")
        if self.kind == "bursts":
            if not (0 < self.burst_length < self.burst_every):
                raise ValueError("a burst lasts more than 0 s and less than the time between bursts")
            if not self.burst_factor >= 1:
                raise ValueError("burst factor must be >= 1")
        if self.kind == "wave":
            if not self.wave_period > 0:
                raise ValueError("wave period must be > 0")
            if not (0 <= self.wave_depth < 1):
                raise ValueError("wave depth must be in [0, 1)")

    def rate_at(self, t: float) -> float:
        if self.kind == "bursts":
            in_burst = (t % self.burst_every) >= self.burst_every - self.burst_length
            return self.rate * self.burst_factor if in_burst else self.rate
        if self.kind == "wave":
            return self.rate * (1 + self.wave_depth * math.sin(2 * math.pi * t / self.wave_period))
        return self.rate

    @property
    def peak(self) -> float:
        if self.kind == "bursts":
            return self.rate * self.burst_factor
        if self.kind == "wave":
            return self.rate * (1 + self.wave_depth)
        return self.rate


def arrivals(pattern: Pattern, rng: random.Random, *, poisson: bool = True) -> Iterator[float]:
    """Seconds since the start at which requests are due, for ever.

    ``poisson``: arrivals of a Poisson process of the pattern's rate, by thinning (a
    candidate at the peak rate is kept with probability rate(t) / peak), which is
    exact for any rate function; otherwise evenly spaced at 1 / rate(t).
    """
    t = 0.0
    if not poisson:
        while True:
            yield t
            t += 1.0 / pattern.rate_at(t)
    peak = pattern.peak
    while True:
        t += rng.expovariate(peak)
        if rng.random() * peak <= pattern.rate_at(t):
            yield t


# -- what is sent --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One kind of request and its share of the traffic (its weight).

    ``path`` may hold ``{id}`` (an item id, 1..1000) and ``{word}`` (a search word),
    filled for each request.
    """

    method: str
    path: str
    weight: float
    body: Any = None  # a JSON body (POST)

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"GET /api/items=50"``: method, path and weight."""
        spec, sep, weight = text.rpartition("=")
        method, _, path = spec.strip().partition(" ")
        if not sep or not path.strip().startswith("/") or not method.isalpha():
            raise ValueError(f"endpoint {text!r}: expected 'METHOD /path=WEIGHT', e.g. 'GET /api/items=50'")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"endpoint {text!r}: weight {weight!r} is not a number") from None
        if not w > 0 or math.isinf(w):
            raise ValueError(f"endpoint {text!r}: weight must be > 0")
        body = {"item_id": "{id}", "quantity": 1} if method.upper() in ("POST", "PUT") else None
        return cls(method.upper(), path.strip(), w, body)


# The demo app's endpoints (demo/app.py) and how often a visitor calls each.
DEMO_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/items", 40),
    Endpoint("GET", "/api/items/{id}", 25),
    Endpoint("GET", "/api/search?q={word}", 15),
    Endpoint("POST", "/api/orders", 12, {"item_id": "{id}", "quantity": 1}),
    Endpoint("GET", "/api/report", 3),  # the slow one
    Endpoint("GET", "/", 5),
)
# Requests a client gets wrong, sent instead of a weighted one at the error ratio:
# the app answers them 4xx (unknown item, bad body, missing parameter).
BAD_REQUESTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/items/{missing}", 1),
    Endpoint("POST", "/api/orders", 1, {"quantity": "many"}),
    Endpoint("GET", "/api/search", 1),
)
WORDS = ("postgres", "latency", "histogram", "bucket", "grafana", "index", "vacuum", "replica")


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    endpoint: str  # the endpoint it was made from ("GET /api/items/{id}"), for the tally
    body: Any = None
    bad: bool = False  # sent to be refused (the error ratio)


def _fill(value: Any, rng: random.Random) -> Any:
    if isinstance(value, str):
        return (value.replace("{id}", str(rng.randint(1, 1000)))
                .replace("{missing}", str(rng.randint(100_000, 999_999)))
                .replace("{word}", rng.choice(WORDS)))
    if isinstance(value, dict):
        out = {k: _fill(v, rng) for k, v in value.items()}
        return {k: int(v) if k == "item_id" and isinstance(v, str) and v.isdigit() else v
                for k, v in out.items()}
    return value


class Picker:
    """Weighted choice among endpoints, and a bad request at ``error_ratio``."""

    def __init__(self, endpoints: Sequence[Endpoint], rng: random.Random, *, error_ratio: float = 0.0,
                 bad: Sequence[Endpoint] = BAD_REQUESTS) -> None:
        if not endpoints:
            raise ValueError("no endpoints to send to")
        if not 0 <= error_ratio <= 1:
            raise ValueError(f"error ratio must be in [0, 1], got {error_ratio}")
        if error_ratio > 0 and not bad:
            raise ValueError("an error ratio needs bad requests to send")
        self.endpoints = list(endpoints)
        self.bad = list(bad)
        self.rng = rng
        self.error_ratio = error_ratio
        total = 0.0
        self._cumulative = []
        for e in self.endpoints:
            total += e.weight
            self._cumulative.append(total)
        self._total = total

    def pick(self) -> Request:
        if self.error_ratio and self.rng.random() < self.error_ratio:
            e = self.rng.choice(self.bad)
            bad = True
        else:
            e = self.endpoints[bisect.bisect_right(self._cumulative, self.rng.random() * self._total)]
            bad = False
        return Request(e.method, _fill(e.path, self.rng), f"{e.method} {e.path}", _fill(e.body, self.rng), bad)


# -- the tally of answers --------------------------------------------------------------


LATENCIES_KEPT = 100_000


class Tally:
    """What was sent and how it was answered; thread-safe (senders answer from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.skipped = 0  # due but not sent: every connection of the sender was busy
        self.by_status: Counter[int] = Counter()  # 0: no answer (connection error, timeout)
        self.by_endpoint: Counter[str] = Counter()
        self.samples_sent = 0
        self.samples_accepted = 0
        # The latest answers' latencies, bounded so a run of days keeps its memory and
        # its progress lines cheap: quantiles are of the last LATENCIES_KEPT answers.
        self.latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.failures: Counter[str] = Counter()  # why requests got no answer

    def record_sent(self, endpoint: str, samples: int = 0) -> None:
        with self._lock:
            self.sent += 1
            self.by_endpoint[endpoint] += 1
            self.samples_sent += samples

    def record_skipped(self) -> None:
        with self._lock:
            self.skipped += 1

    def record_answer(self, status: int, seconds: float, samples: int = 0, failure: str | None = None) -> None:
        with self._lock:
            self.by_status[status] += 1
            self.latencies.append(seconds)
            if 200 <= status < 300:
                self.samples_accepted += samples
            if failure:
                self.failures[failure] += 1

    @property
    def answered(self) -> int:
        with self._lock:
            return sum(self.by_status.values())

    def quantile(self, q: float) -> float | None:
        with self._lock:
            values = sorted(self.latencies)
        if not values:
            return None
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    def summary(self, seconds: float) -> dict[str, Any]:
        with self._lock:
            by_class = Counter(("error" if s == 0 else f"{s // 100}xx") for s in self.by_status.elements())
            out = {
                "seconds": round(seconds, 3),
                "sent": self.sent,
                "skipped": self.skipped,
                "answered": sum(self.by_status.values()),
                "rate": round(self.sent / seconds, 2) if seconds > 0 else None,
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_class": dict(sorted(by_class.items())),
                "by_endpoint": dict(self.by_endpoint.most_common()),
                "failures": dict(self.failures.most_common(5)),
            }
            if self.samples_sent:
                out["samples_sent"] = self.samples_sent
                out["samples_accepted"] = self.samples_accepted
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            v = self.quantile(q)
            out[f"latency_{name}"] = None if v is None else round(v, 4)
        return out

    def progress_line(self, seconds: float) -> str:
        s = self.summary(seconds)
        classes = " ".join(f"{k}={v}" for k, v in s["by_class"].items())
        p95 = s["latency_p95"]
        line = (f"{seconds:7.1f}s sent={s['sent']} rate={s['rate']}/s {classes or 'no answers yet'}"
                f" p95={'-' if p95 is None else f'{p95 * 1000:.0f}ms'}")
        if s["skipped"]:
            line += f" skipped={s['skipped']}"
        if "samples_accepted" in s:
            line += f" samples={s['samples_accepted']}/{s['samples_sent']}"
        return line


# -- the loop --------------------------------------------------------------------------

# Closer than this to its time, a request is due: float seconds since the start cannot
# always be met exactly, and sleeping for less would spin.
_DUE = 1e-6


def run(due: Iterator[float], make: Callable[[], Any], send: Callable[[Any], None], clock: Clock, *,
        duration: float | None, stop: threading.Event | None = None,
        progress: Callable[[float], None] | None = None, progress_every: float = 10.0) -> float:
    """Send ``make()`` to ``send`` at each time of ``due`` (seconds since the start)
    until ``duration`` seconds have passed (None: until ``stop`` is set). Returns the
    seconds it ran. A request is made when it is due, so what it carries (a
    timestamp, a counter's value) is of that moment.
    """
    start = clock.now()
    next_progress = progress_every
    for offset in due:
        if duration is not None and offset >= duration - _DUE:
            break
        while True:
            if stop is not None and stop.is_set():
                return clock.now() - start
            elapsed = clock.now() - start
            if progress is not None and elapsed >= next_progress:
                progress(elapsed)
                next_progress += progress_every
            wait = offset - elapsed
            if wait <= _DUE:
                break
            # Sleep in slices, so progress lines and a stop are not held up by a long gap.
            clock.sleep(min(wait, max(0.05, next_progress - elapsed)))
        send(make())
    end = start + duration if duration is not None else clock.now()
    # Wait out the last gap: a run of 10 s lasts 10 s, whatever its last arrival.
    while duration is not None and end - clock.now() > _DUE and not (stop is not None and stop.is_set()):
        clock.sleep(end - clock.now())
    return clock.now() - start
