"""Binary operators, as Prometheus 2.42 evaluates them on one step.

Arithmetic (``+ - * / % ^ atan2``), comparisons (filtering, or 0/1 with ``bool``)
and the set operators ``and``, ``or``, ``unless``; between scalars, a vector and a
scalar, or two vectors matched one-to-one, many-to-one (``group_left``),
one-to-many (``group_right``), ``on`` or ``ignoring`` labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from pgpulse.promql import gomath
from pgpulse.promql.errors import ExecutionError
from pgpulse.promql.values import NAME, Labels, drop_name

Sample = tuple[Labels, float]
ARITHMETIC = ("+", "-", "*", "/", "%", "^", "atan2")
COMPARISON = ("==", "!=", ">", "<", ">=", "<=")
SET = ("and", "or", "unless")
# Operators whose result drops the metric name (atan2 keeps it, as in Prometheus 2.42).
DROPS_NAME = ("+", "-", "*", "/", "%", "^")


def arithmetic(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return gomath.div(a, b)
    if op == "%":
        return gomath.mod(a, b)
    if op == "^":
        return gomath.pow(a, b)
    return gomath.atan2(a, b)


def compare(op: str, a: float, b: float) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == ">":
        return a > b
    if op == "<":
        return a < b
    if op == ">=":
        return a >= b
    return a <= b


def scalar_op(op: str, a: float, b: float) -> float:
    if op in COMPARISON:
        return 1.0 if compare(op, a, b) else 0.0
    return arithmetic(op, a, b)


def vector_scalar(op: str, vector: Sequence[Sample], scalar: float, swap: bool,
                  return_bool: bool) -> list[Sample]:
    """``vector op scalar`` (or ``scalar op vector`` when ``swap``)."""
    out = []
    for labels, v in vector:
        lv, rv = (scalar, v) if swap else (v, scalar)
        if op in COMPARISON:
            keep = compare(op, lv, rv)
            value = rv if swap else lv
        else:
            keep, value = True, arithmetic(op, lv, rv)
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if keep:
            if op in DROPS_NAME or return_bool:
                labels = drop_name(labels)
            out.append((labels, value))
    return out


@dataclasses.dataclass(frozen=True)
class Matching:
    card: str  # one-to-one, many-to-one, one-to-many, many-to-many
    on: bool
    labels: tuple[str, ...]
    include: tuple[str, ...]


def signature(labels: Labels, matching: Matching) -> Labels:
    if matching.on:
        names = set(matching.labels)
        return tuple(p for p in labels if p[0] in names)
    names = set(matching.labels) | {NAME}
    return tuple(p for p in labels if p[0] not in names)


def set_op(op: str, lhs: Sequence[Sample], rhs: Sequence[Sample], matching: Matching
           ) -> list[Sample]:
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {signature(labels, matching) for labels, _ in rhs}
        return [s for s in lhs if signature(s[0], matching) in right]
    if op == "or":
        if not lhs:
            return list(rhs)
        if not rhs:
            return list(lhs)
        left = {signature(labels, matching) for labels, _ in lhs}
        return list(lhs) + [s for s in rhs if signature(s[0], matching) not in left]
    if not lhs or not rhs:
        return list(lhs)
    right = {signature(labels, matching) for labels, _ in rhs}
    return [s for s in lhs if signature(s[0], matching) not in right]


def _result_labels(lhs: Labels, rhs: Labels, op: str, matching: Matching) -> Labels:
    labels = dict(lhs)
    if op in DROPS_NAME:
        labels.pop(NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            keep = set(matching.labels)
            labels = {k: v for k, v in labels.items() if k in keep}
        else:
            for name in matching.labels:
                labels.pop(name, None)
    right = dict(rhs)
    for name in matching.include:
        value = right.get(name, "")
        if value:
            labels[name] = value
        else:
            labels.pop(name, None)
    return tuple(sorted(labels.items()))


def _describe(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


def vector_vector(op: str, lhs: Sequence[Sample], rhs: Sequence[Sample], matching: Matching,
                  return_bool: bool) -> list[Sample]:
    """Arithmetic or comparison between two vectors (not the set operators)."""
    if not lhs or not rhs:
        return []
    if matching.card == "one-to-many":
        lhs, rhs = rhs, lhs
    right: dict[Labels, Sample] = {}
    for s in rhs:
        sig = signature(s[0], matching)
        if sig in right:
            side = "left" if matching.card == "one-to-many" else "right"
            raise ExecutionError(
                f"found duplicate series for the match group {_describe(sig)} on the {side} "
                f"hand-side of the operation: [{_describe(s[0])}, {_describe(right[sig][0])}]"
                ";many-to-many matching not allowed: matching labels must be unique on one side")
        right[sig] = s
    matched: dict[Labels, set[Labels] | None] = {}
    out: list[Sample] = []
    for labels, lv in lhs:
        sig = signature(labels, matching)
        found = right.get(sig)
        if found is None:
            continue
        r_labels, rv = found
        vl, vr = (rv, lv) if matching.card == "one-to-many" else (lv, rv)
        if op in COMPARISON:
            keep, value = compare(op, vl, vr), vl
        else:
            keep, value = True, arithmetic(op, vl, vr)
        if return_bool:
            value = 1.0 if keep else 0.0
        elif not keep:
            continue
        metric = _result_labels(labels, r_labels, op, matching)
        if return_bool:
            metric = drop_name(metric)
        if matching.card == "one-to-one":
            if sig in matched:
                raise ExecutionError("multiple matches for labels: many-to-one matching must be "
                                     "explicit (group_left/group_right)")
            matched[sig] = None
        else:
            inserted = matched.setdefault(sig, set())
            assert inserted is not None
            if metric in inserted:
                raise ExecutionError("multiple matches for labels: grouping labels must ensure "
                                     "unique matches")
            inserted.add(metric)
        out.append((metric, value))
    return out


def is_nan(v: float) -> bool:
    return math.isnan(v)
