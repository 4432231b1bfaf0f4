"""Aggregation operators over one step's vector, as Prometheus 2.42's ``aggregation``.

``sum``, ``avg``, ``min``, ``max``, ``count``, ``group``, ``stddev``, ``stdvar``,
``topk``, ``bottomk``, ``quantile`` and ``count_values``, with ``by`` or
``without``. topk and bottomk keep Go's heap, so that among equal values the same
series are chosen as Prometheus chooses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pgpulse.promql.errors import BadQuery, ExecutionError
from pgpulse.promql.functions import quantile
from pgpulse.promql.values import NAME, Labels, format_value

OPERATORS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
             "bottomk", "quantile", "count_values")
Sample = tuple[Labels, float]


def group_key(labels: Labels, grouping: Sequence[str], without: bool) -> Labels:
    if without:
        drop = set(grouping) | {NAME}
        return tuple(p for p in labels if p[0] not in drop)
    keep = set(grouping)
    return tuple(p for p in labels if p[0] in keep)


# -- Go's container/heap with Prometheus's orderings --------------------------------


def _less_heap(a: float, b: float) -> bool:  # vectorByValueHeap.Less
    return True if math.isnan(a) else a < b


def _less_reverse(a: float, b: float) -> bool:  # vectorByReverseValueHeap.Less
    return True if math.isnan(a) else a > b


def _up(h: list[Sample], j: int, less) -> None:
    while True:
        i = (j - 1) // 2
        if i == j or j <= 0 or not less(h[j][1], h[i][1]):
            break
        h[i], h[j] = h[j], h[i]
        j = i


def _down(h: list[Sample], i0: int, n: int, less) -> None:
    i = i0
    while True:
        j1 = 2 * i + 1
        if j1 >= n or j1 < 0:
            break
        j = j1
        j2 = j1 + 1
        if j2 < n and less(h[j2][1], h[j1][1]):
            j = j2
        if not less(h[j][1], h[i][1]):
            break
        h[i], h[j] = h[j], h[i]
        i = j


def _push(h: list[Sample], x: Sample, less) -> None:
    h.append(x)
    _up(h, len(h) - 1, less)


def _pop(h: list[Sample], less) -> Sample:
    n = len(h) - 1
    h[0], h[n] = h[n], h[0]
    _down(h, 0, n, less)
    return h.pop()


def _k(param: float | None) -> int:
    if param is None or math.isnan(param) or not -(2**63) <= param < 2**63:
        raise ExecutionError(f"Scalar value {format_value(param or math.nan)} overflows int64")
    return int(param)


def aggregate(op: str, grouping: Sequence[str], without: bool, param: float | str | None,
              vector: Sequence[Sample]) -> list[Sample]:
    """One step of ``op`` over ``vector``: the output samples, in Prometheus's order."""
    k = 0
    if op in ("topk", "bottomk"):
        k = _k(param if isinstance(param, float) else None)
        if k < 1:
            return []
    value_label = ""
    if op == "count_values":
        value_label = str(param)
        if not value_label or not (value_label[0].isalpha() or value_label[0] == "_") or \
                not all(c.isascii() and (c.isalnum() or c == "_") for c in value_label):
            raise ExecutionError(f'invalid label name "{value_label}"')
        if not without:
            grouping = sorted({*grouping, value_label})
    groups: dict[Labels, dict] = {}
    for labels, v in vector:
        metric = labels
        if op == "count_values":
            metric = tuple(sorted([p for p in labels if p[0] != value_label]
                                  + [(value_label, format_value(v))]))
        key = group_key(metric, grouping, without)
        g = groups.get(key)
        if g is None:
            if without:
                out_labels = key
            elif grouping:
                out_labels = key
            else:
                out_labels = ()
            g = groups[key] = {"labels": out_labels, "value": v, "mean": v, "count": 1,
                               "heap": [(labels, v)], "values": [v]}
            if op in ("stddev", "stdvar"):
                g["value"] = 0.0
            elif op == "group":
                g["value"] = 1.0
            continue
        if op == "sum":
            g["value"] += v
        elif op == "avg":
            g["count"] += 1
            mean = g["mean"]
            if math.isinf(mean):
                if math.isinf(v) and (mean > 0) == (v > 0):
                    continue
                if not math.isinf(v) and not math.isnan(v):
                    continue
            g["mean"] = mean + v / g["count"] - mean / g["count"]
        elif op == "max":
            if g["value"] < v or math.isnan(g["value"]):
                g["value"] = v
        elif op == "min":
            if g["value"] > v or math.isnan(g["value"]):
                g["value"] = v
        elif op in ("count", "count_values"):
            g["count"] += 1
        elif op in ("stddev", "stdvar"):
            g["count"] += 1
            delta = v - g["mean"]
            g["mean"] += delta / g["count"]
            g["value"] += delta * (v - g["mean"])
        elif op in ("topk", "bottomk"):
            heap = g["heap"]
            less = _less_heap if op == "topk" else _less_reverse
            top = heap[0][1]
            better = top < v if op == "topk" else top > v
            if len(heap) < k or better or math.isnan(top):
                if len(heap) == k:
                    if k == 1:
                        heap[0] = (labels, v)
                        continue
                    _pop(heap, less)
                _push(heap, (labels, v), less)
        elif op == "quantile":
            g["values"].append(v)
    out: list[Sample] = []
    for g in groups.values():
        if op == "avg":
            value = g["mean"]
        elif op in ("count", "count_values"):
            value = float(g["count"])
        elif op == "stdvar":
            value = g["value"] / g["count"]
        elif op == "stddev":
            value = math.sqrt(g["value"] / g["count"]) if g["value"] / g["count"] >= 0 else math.nan
        elif op in ("topk", "bottomk"):
            less = _less_heap if op == "topk" else _less_reverse
            ordered = sorted(g["heap"], key=lambda s: _order_key(s[1], op == "topk"))
            out.extend(ordered)
            continue
        elif op == "quantile":
            value = quantile(float(param), g["values"])  # type: ignore[arg-type]
        else:
            value = g["value"]
        out.append((g["labels"], value))
    return out


def _order_key(v: float, descending: bool) -> tuple[int, float]:
    # sort.Reverse of the heap ordering: topk largest first, bottomk smallest first,
    # NaN last.
    if math.isnan(v):
        return (1, 0.0)
    return (0, -v if descending else v)


def check_param(op: str, param: object) -> None:
    if op in ("topk", "bottomk", "quantile") and param is None:
        raise BadQuery(f"{op}() needs a parameter")
