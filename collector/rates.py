"""Per-second rates of kernel counters, computed between two samples.

Counters (bytes read, packets sent, context switches, ...) only grow, until the
machine reboots, a driver wraps a 32-bit counter or a device is re-created. A
counter lower than its previous reading therefore *starts over*: that interval has
no rate (``None``) and the new reading is the baseline for the next one, instead
of a huge negative rate that would poison every aggregate built on it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


class Rates:
    """Remembers the last reading of each counter; one instance per agent.

    Usage per sample: ``begin(elapsed)``, then ``rate(key, value)`` for every
    counter, then ``end()`` to forget counters that were not read this time
    (devices and interfaces that went away).
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, float] = {}
        self._seen: set[Hashable] = set()
        self.elapsed: float | None = None

    def begin(self, elapsed: float | None) -> None:
        """Start a sample taken ``elapsed`` seconds after the previous one (None: first)."""
        self.elapsed = elapsed if elapsed is not None and elapsed > 0 else None
        self._seen = set()

    def delta(self, key: Hashable, value: float) -> float | None:
        """How much the counter grew since the previous sample; None when unknown."""
        self._seen.add(key)
        previous = self._last.get(key)
        self._last[key] = value
        if previous is None or self.elapsed is None or value < previous:
            return None
        return value - previous

    def rate(self, key: Hashable, value: float) -> float | None:
        """Growth per second since the previous sample; None on the first reading of
        a counter and when it went backwards (it starts over)."""
        grown = self.delta(key, value)
        if grown is None:
            return None
        return grown / self.elapsed

    def end(self) -> None:
        """Forget counters not read in this sample."""
        for key in self._last.keys() - self._seen:
            del self._last[key]


def total(values: Iterable[float | None]) -> float | None:
    """The sum of the known rates; None when none is known.

    A device that appeared or started over this interval has no rate yet and is
    left out of the total for that one interval.
    """
    known = [v for v in values if v is not None]
    return sum(known) if known else None
