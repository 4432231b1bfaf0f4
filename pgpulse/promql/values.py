"""The values an expression evaluates to, over the steps of one evaluation.

Times are integer milliseconds since the Unix epoch, as in Prometheus. A series over
the steps holds one value or ``None`` (no sample) per step, so an instant query is
the one-step case of a range query and every operator is written once.
"""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

Labels = tuple[tuple[str, str], ...]  # sorted by label name; "__name__" is the metric name
NAME = "__name__"


def labels_of(mapping: dict[str, str]) -> Labels:
    """Labels from a mapping, without empty values (an empty label does not exist)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != NAME)


def get(labels: Labels, name: str) -> str:
    for k, v in labels:
        if k == name:
            return v
    return ""


@dataclasses.dataclass
class Series:
    """An instant vector's series over the steps: a value or None per step."""

    labels: Labels
    values: list[float | None]


@dataclasses.dataclass
class RangeSeries:
    """Samples of one series (stale markers removed), oldest first."""

    labels: Labels
    times: list[int]
    values: list[float]


@dataclasses.dataclass
class RangeValue:
    """A range vector (selector or subquery) for every step: step i sees the samples
    in [ends[i] - range_ms, ends[i]] (left-closed, as Prometheus 2.x)."""

    series: list[RangeSeries]
    range_ms: int
    ends: list[int]
    selector: object | None = None  # the promql_parser node, for absent_over_time


@dataclasses.dataclass
class Scalar:
    values: list[float]


@dataclasses.dataclass
class String:
    value: str


def format_value(v: float) -> str:
    """A float as Prometheus writes it in JSON: Go's strconv 'f' format, shortest."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = repr(v)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def format_time(ms: int) -> float | int:
    """Unix seconds of a millisecond time, as Prometheus writes them."""
    return ms // 1000 if ms % 1000 == 0 else ms / 1000
