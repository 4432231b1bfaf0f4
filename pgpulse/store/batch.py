"""The column-shaped batch of samples every writer hands to the store, and its times.

A :class:`Batch` holds distinct series (:class:`SeriesKey`) and rows of (PostgreSQL
microseconds, series index, value): the shape the binary COPY into ``samples``
wants. The proxy's validator builds one from JSON, the ETL from readings; both then
call :func:`pgpulse.store.samples.write_batch`.

Times are PostgreSQL microseconds (since 2000-01-01 UTC), the unit of binary COPY.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

from pgpulse.store.errors import InvalidSample

PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z, where PostgreSQL's binary timestamps count from
PG_EPOCH_US = PG_EPOCH_S * 1_000_000
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)")
_FRACTION = re.compile(r"\.(\d+)")

LabelKey = tuple[tuple[str, str], ...]
CacheKey = tuple[str, LabelKey]


@dataclasses.dataclass
class SeriesKey:
    name: str
    labels: dict[str, str]
    type: str | None  # as the batch declared it (None: not said)
    # The type a new series gets when none is declared (a protocol's guess, e.g. from
    # Prometheus metadata): used only when the series is created, never checked
    # against an existing series' type.
    hint: str | None = None


@dataclasses.dataclass(frozen=True)
class Window:
    """The sample times a protocol accepts, in PostgreSQL microseconds, and the settings
    they come from (named in refusals)."""

    lo_us: int
    hi_us: int
    max_past_s: int
    max_future_s: int

    @classmethod
    def around(cls, now_us: int, max_past_s: int, max_future_s: int) -> Window:
        return cls(now_us - max_past_s * 1_000_000, now_us + max_future_s * 1_000_000,
                   max_past_s, max_future_s)


@dataclasses.dataclass
class Batch:
    """Distinct series, and rows of (PostgreSQL µs, series index, value).

    ``stale``: staleness markers as (PostgreSQL µs, series index), never values
    (:mod:`pgpulse.store.staleness`). ``metadata``: metric family name ->
    (type, help, unit) (:mod:`pgpulse.store.metadata`). Both are written in the
    batch's transaction, so a batch is stored whole or not at all.
    """

    keys: list[SeriesKey] = dataclasses.field(default_factory=list)
    index: dict[CacheKey, int] = dataclasses.field(default_factory=dict)
    rows: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)
    stale: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    metadata: dict[str, tuple[str, str, str]] = dataclasses.field(default_factory=dict)

    def series(self, name: str, labels: dict[str, str], type: str | None = None) -> int:
        """The index of series (name, labels) in this batch, adding it when new; a
        declared ``type`` holds for the series' other samples in the batch too."""
        key = cache_key(name, labels)
        k = self.index.get(key)
        if k is None:
            k = self.index[key] = len(self.keys)
            self.keys.append(SeriesKey(name, labels, type))
        elif type is not None:
            declared = self.keys[k].type
            if declared is None:
                self.keys[k].type = type
            elif declared != type:
                raise InvalidSample(f"series declared both {declared} and {type} in this batch",
                                    field="type", reason="type_conflict")
        return k


def cache_key(name: str, labels: dict[str, str]) -> CacheKey:
    """The identity of a series: its name and its labels in sorted order."""
    return name, tuple(sorted(labels.items()))


def parse_rfc3339(text: str) -> datetime | None:
    """An aware datetime for RFC 3339 text, or None when it is not RFC 3339."""
    if len(text) > 40 or not _RFC3339.fullmatch(text):
        return None
    # fromisoformat takes at most 6 fractional digits: drop the nanoseconds.
    frac = _FRACTION.search(text)
    if frac and len(frac.group(1)) > 6:
        text = text[: frac.start(1) + 6] + text[frac.end(1):]
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
        # 0001-01-01T00:00:00+14:00 parses but lies before year 1 in UTC: not a time.
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return parsed


def datetime_us(when: datetime) -> int:
    """PostgreSQL microseconds of an aware datetime (integer arithmetic: no rounding)."""
    return (when - PG_EPOCH) // _US


def unix_us(seconds: float) -> int:
    """PostgreSQL microseconds of Unix seconds."""
    return round(seconds * 1_000_000) - PG_EPOCH_US
