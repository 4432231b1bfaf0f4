"""The PromQL evaluator: a parsed expression, evaluated over the steps of a query.

Every node evaluates to its value at every step at once (an instant query is a range
query of one step), following Prometheus 2.42's engine (promql/engine.go): a
selector reads its series once for the whole range (matchers in SQL, samples in one
statement), range functions slide a window over each series, and operators and
aggregations work step by step. ``@`` and ``offset`` move the time a selector or
subquery is evaluated at; ``@ start()`` and ``@ end()`` are the query's own start
and end. Parsing is the ``promql-parser`` package's.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import promql_parser as pp

from pgpulse.promql import aggregations, binops, functions, tiered
from pgpulse.promql.errors import BadQuery, ExecutionError, QueryTimeout, Unsupported
from pgpulse.promql.selection import Reader, instant, ranged, sample_times
from pgpulse.promql.values import (
    NAME,
    Labels,
    RangeSeries,
    RangeValue,
    Scalar,
    Series,
    String,
    drop_name,
    get,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
LOOKBACK_MS = 5 * 60 * 1000  # Prometheus's default --query.lookback-delta
SUBQUERY_STEP_MS = 60 * 1000  # a subquery without a step: the default evaluation interval
MAX_SUBQUERY_STEPS = 1_000_000

OTHER_FUNCTIONS = frozenset({
    "time", "pi", "vector", "scalar", "timestamp", "absent", "sort", "sort_desc",
    "label_replace", "label_join", "histogram_quantile", "histogram_count", "histogram_sum",
    "histogram_fraction",
})
SUPPORTED_FUNCTIONS = frozenset(functions.RANGE_FUNCTIONS) | frozenset(
    functions.VALUE_FUNCTIONS) | frozenset(functions.DATE_FUNCTIONS) | OTHER_FUNCTIONS

Value = Scalar | String | RangeValue | list[Series]


def ms(delta: timedelta | None) -> int:
    return 0 if delta is None else delta // MS


def parse(text: str) -> pp.Expr:
    """The expression ``text``; BadQuery on a syntax error, Unsupported on what
    pgpulse does not evaluate."""
    try:
        expr = pp.parse(text)
    except (ValueError, TypeError) as exc:
        raise BadQuery(f"parse error: {exc}") from None
    except BaseException as exc:  # a panic of the Rust parser surfaces as PanicException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise BadQuery(f"parse error: {exc}") from None
    _check_supported(expr)
    return expr


def _check_supported(expr: pp.Expr) -> None:
    problems: list[str] = []

    def visit(node: pp.Expr) -> None:
        if isinstance(node, pp.Call) and node.func.name not in SUPPORTED_FUNCTIONS:
            problems.append(f"function {node.func.name}() is not supported (not in Prometheus 2.42)")
        elif isinstance(node, pp.AggregateExpr) and str(node.op) not in aggregations.OPERATORS:
            problems.append(f"aggregation {node.op}() is not supported (not in Prometheus 2.42)")
        elif isinstance(node, pp.VectorSelector) and node.matchers.or_matchers:
            problems.append("'or' inside a selector's braces is not supported (not in Prometheus 2.42)")
        elif isinstance(node, pp.BinaryExpr) and node.modifier is not None:
            fill = node.modifier.fill_values
            if fill is not None and (fill.lhs is not None or fill.rhs is not None):
                problems.append("fill modifiers of binary operators are not supported")

    pp.walk(expr, visit)
    if problems:
        raise Unsupported(problems[0])


def value_type(node: pp.Expr) -> str:
    """'scalar', 'vector', 'matrix' or 'string', as Prometheus types the node."""
    if isinstance(node, pp.NumberLiteral):
        return "scalar"
    if isinstance(node, pp.StringLiteral):
        return "string"
    if isinstance(node, pp.VectorSelector | pp.AggregateExpr):
        return "vector"
    if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
        return "matrix"
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr):
        return value_type(node.expr)
    if isinstance(node, pp.Call):
        return str(node.func.return_type).rsplit(".", 1)[-1].lower()
    if isinstance(node, pp.BinaryExpr):
        both = value_type(node.lhs) == "scalar" and value_type(node.rhs) == "scalar"
        return "scalar" if both else "vector"
    raise Unsupported(f"expression of type {type(node).__name__} is not supported")


def unwrap(node: pp.Expr) -> pp.Expr:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def merge(series: Sequence[Series], steps: int) -> list[Series]:
    """Series with equal labels joined into one; a step where two have a value is an
    error, as Prometheus's 'vector cannot contain metrics with the same labelset'."""
    out: dict[Labels, Series] = {}
    for s in series:
        kept = out.get(s.labels)
        if kept is None:
            out[s.labels] = Series(s.labels, list(s.values))
            continue
        for i in range(steps):
            if s.values[i] is not None:
                if kept.values[i] is not None:
                    raise ExecutionError("vector cannot contain metrics with the same labelset")
                kept.values[i] = s.values[i]
    return list(out.values())


@dataclasses.dataclass
class Ctx:
    times: list[int]

    @property
    def steps(self) -> int:
        return len(self.times)


class Evaluator:
    """Evaluates one query: the parsed expression at ``times`` (ms)."""

    def __init__(self, reader: Reader, start_ms: int, end_ms: int, deadline: float,
                 lookback_ms: int = LOOKBACK_MS, subquery_step_ms: int = SUBQUERY_STEP_MS,
                 tiers: bool = True) -> None:
        self.reader = reader
        self.tiers = tiers
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.deadline = deadline
        self.lookback_ms = lookback_ms
        self.subquery_step_ms = subquery_step_ms

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout("query timed out in expression evaluation")

    # -- times -------------------------------------------------------------------------

    def _at(self, at: pp.AtModifier | None) -> int | None:
        if at is None:
            return None
        if at.type == pp.AtModifierType.Start:
            return self.start_ms
        if at.type == pp.AtModifierType.End:
            return self.end_ms
        return (at.at - EPOCH) // MS

    def refs(self, ctx: Ctx, at: pp.AtModifier | None, offset: timedelta | None) -> list[int]:
        fixed = self._at(at)
        off = ms(offset)
        if fixed is not None:
            return [fixed - off] * ctx.steps
        return [t - off for t in ctx.times]

    # -- dispatch ----------------------------------------------------------------------

    def eval(self, node: pp.Expr, ctx: Ctx) -> Value:
        self.check()
        if isinstance(node, pp.NumberLiteral):
            return Scalar([node.val] * ctx.steps)
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr, ctx)
        if isinstance(node, pp.UnaryExpr):
            return self.negate(self.eval(node.expr, ctx), ctx)
        if isinstance(node, pp.VectorSelector):
            refs = self.refs(ctx, node.at, node.offset)
            if self.tiers:
                served = tiered.instant_selector(self.reader, node, refs, self.lookback_ms)
                if served is not None:
                    return served
            loaded = self.reader.load(node, min(refs) - self.lookback_ms, max(refs))
            return instant(loaded, refs, self.lookback_ms)
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            refs = self.refs(ctx, vs.at, vs.offset)
            rng = ms(node.range)
            loaded = self.reader.load(vs, min(refs) - rng, max(refs))
            return RangeValue(ranged(loaded), rng, refs, vs)
        if isinstance(node, pp.SubqueryExpr):
            return self.subquery(node, ctx)
        if isinstance(node, pp.Call):
            return self.call(node, ctx)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node, ctx)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node, ctx)
        raise Unsupported(f"expression of type {type(node).__name__} is not supported")

    def vector(self, node: pp.Expr, ctx: Ctx) -> list[Series]:
        value = self.eval(node, ctx)
        if not isinstance(value, list):
            raise BadQuery(f"expected an instant vector, got {value_type(node)}: {node}")
        return value

    def scalar(self, node: pp.Expr, ctx: Ctx) -> list[float]:
        value = self.eval(node, ctx)
        if not isinstance(value, Scalar):
            raise BadQuery(f"expected a scalar, got {value_type(node)}: {node}")
        return value.values

    def negate(self, value: Value, ctx: Ctx) -> Value:
        if isinstance(value, Scalar):
            return Scalar([-v for v in value.values])
        if isinstance(value, list):
            return merge([Series(drop_name(s.labels), [None if v is None else -v for v in s.values])
                          for s in value], ctx.steps)
        raise BadQuery("unary minus applies to scalars and instant vectors")

    # -- subqueries --------------------------------------------------------------------

    def subquery(self, node: pp.SubqueryExpr, ctx: Ctx) -> RangeValue:
        step = ms(node.step) or self.subquery_step_ms
        rng = ms(node.range)
        refs = self.refs(ctx, node.at, node.offset)
        low, high = min(refs) - rng, max(refs)
        first = -(-low // step) * step
        count = (high - first) // step + 1 if high >= first else 0
        if count > MAX_SUBQUERY_STEPS:
            raise ExecutionError(f"subquery {node} would evaluate {count} steps; the limit is "
                                 f"{MAX_SUBQUERY_STEPS}")
        series: list[RangeSeries] = []
        if count > 0:
            inner = Ctx([first + i * step for i in range(count)])
            for s in self.vector(node.expr, inner):
                ts = [t for t, v in zip(inner.times, s.values, strict=True) if v is not None]
                vs = [v for v in s.values if v is not None]
                series.append(RangeSeries(s.labels, ts, vs))
        return RangeValue(series, rng, refs, None)

    # -- per-step machinery ------------------------------------------------------------

    def per_step(self, ctx: Ctx, inputs: Sequence[list[Series]],
                 fn: Callable[..., list[tuple[Labels, float]]]) -> list[Series]:
        out: dict[Labels, list[float | None]] = {}
        n = ctx.steps
        for i in range(n):
            if i % 256 == 0:
                self.check()
            vectors = [[(s.labels, s.values[i]) for s in series if s.values[i] is not None]
                       for series in inputs]
            seen: set[Labels] = set()
            for labels, value in fn(i, *vectors):
                if labels in seen:
                    raise ExecutionError("vector cannot contain metrics with the same labelset")
                seen.add(labels)
                values = out.get(labels)
                if values is None:
                    values = out[labels] = [None] * n
                values[i] = value
        return [Series(labels, values) for labels, values in out.items()]

    # -- functions ---------------------------------------------------------------------

    def call(self, node: pp.Call, ctx: Ctx) -> Value:
        name = node.func.name
        args = [unwrap(a) for a in node.args]
        if name in functions.RANGE_FUNCTIONS:
            return self.range_call(name, args, ctx)
        if name == "time":
            return Scalar([t / 1000 for t in ctx.times])
        if name == "pi":
            return Scalar([math.pi] * ctx.steps)
        if name == "vector":
            return [Series((), list(self.scalar(args[0], ctx)))]
        if name == "scalar":
            vec = self.vector(args[0], ctx)
            values = []
            for i in range(ctx.steps):
                present = [s.values[i] for s in vec if s.values[i] is not None]
                values.append(present[0] if len(present) == 1 else math.nan)
            return Scalar(values)
        if name == "timestamp":
            return self.timestamp(args[0], ctx)
        if name == "absent":
            vec = self.vector(args[0], ctx)
            values: list[float | None] = [
                None if any(s.values[i] is not None for s in vec) else 1.0 for i in range(ctx.steps)]
            if all(v is None for v in values):
                return []
            return [Series(absent_labels(args[0]), values)]
        if name in functions.DATE_FUNCTIONS:
            fn = functions.DATE_FUNCTIONS[name]
            if not args:
                return [Series((), [fn(float(t // 1000)) for t in ctx.times])]
            return merge([Series(drop_name(s.labels), [None if v is None else fn(v) for v in s.values])
                          for s in self.vector(args[0], ctx)], ctx.steps)
        if name in functions.VALUE_FUNCTIONS:
            return self.value_call(name, args, ctx)
        if name in ("sort", "sort_desc"):
            vec = self.vector(args[0], ctx)
            if ctx.steps == 1:
                vec = sort_vector(vec, name == "sort_desc")
            return vec
        if name == "label_replace":
            return self.label_replace(args, ctx)
        if name == "label_join":
            return self.label_join(args, ctx)
        if name == "histogram_quantile":
            return self.histogram_quantile(args, ctx)
        if name in ("histogram_count", "histogram_sum", "histogram_fraction"):
            # Native histograms only; pgpulse stores classic ones, so nothing matches.
            return []
        raise Unsupported(f"function {name}() is not supported")

    def range_call(self, name: str, args: list[pp.Expr], ctx: Ctx) -> list[Series]:
        index = functions.RANGE_ARG.get(name, 0)
        scalars = [self.scalar(a, ctx) for i, a in enumerate(args) if i != index]
        arg = args[index]
        if self.tiers and isinstance(arg, pp.MatrixSelector):
            vs = arg.vector_selector
            served = tiered.range_function(self.reader, name, arg, self.refs(ctx, vs.at, vs.offset),
                                           ms(arg.range))
            if served is not None:
                return served
        value = self.eval(arg, ctx)
        if not isinstance(value, RangeValue):
            raise BadQuery(f"expected a range vector in {name}(), got {value_type(args[index])}")
        fn = functions.RANGE_FUNCTIONS[name]
        out: list[Series] = []
        for k, s in enumerate(value.series):
            if k % 64 == 0:
                self.check()
            values: list[float | None] = []
            found = False
            for i, end in enumerate(value.ends):
                start = end - value.range_ms
                lo = bisect.bisect_left(s.times, start)
                hi = bisect.bisect_right(s.times, end)
                if lo >= hi:
                    values.append(None)
                    continue
                result = fn(s.times[lo:hi], s.values[lo:hi], start, end, ctx.times[i],
                            [sc[i] for sc in scalars])
                values.append(result)
                found = found or result is not None
            if found:
                labels = s.labels if name == "last_over_time" else drop_name(s.labels)
                out.append(Series(labels, values))
        if name == "absent_over_time":
            present = [any(s.values[i] is not None for s in out) for i in range(ctx.steps)]
            if all(present):
                return []
            labels = absent_labels(value.selector) if value.selector is not None else ()
            return [Series(labels, [None if p else 1.0 for p in present])]
        if len({s.labels for s in out}) != len(out):
            raise ExecutionError("vector cannot contain metrics with the same labelset")
        return out

    def value_call(self, name: str, args: list[pp.Expr], ctx: Ctx) -> list[Series]:
        fn = functions.VALUE_FUNCTIONS[name]
        scalars = [self.scalar(a, ctx) for a in args[1:]]
        vec = self.vector(args[0], ctx)
        out = []
        for s in vec:
            values: list[float | None] = []
            for i, v in enumerate(s.values):
                extra = [sc[i] for sc in scalars]
                if v is None or (name == "clamp" and extra[1] < extra[0]):
                    values.append(None)
                else:
                    values.append(fn(v, extra))
            if any(v is not None for v in values):
                out.append(Series(drop_name(s.labels), values))
        return merge(out, ctx.steps)

    def timestamp(self, arg: pp.Expr, ctx: Ctx) -> list[Series]:
        if isinstance(arg, pp.VectorSelector):
            refs = self.refs(ctx, arg.at, arg.offset)
            loaded = self.reader.load(arg, min(refs) - self.lookback_ms, max(refs))
            series = sample_times(loaded, refs, self.lookback_ms)
            return merge([Series(drop_name(s.labels), [None if v is None else v / 1000
                                                       for v in s.values]) for s in series],
                         ctx.steps)
        vec = self.vector(arg, ctx)
        return merge([Series(drop_name(s.labels), [None if v is None else ctx.times[i] / 1000
                                                   for i, v in enumerate(s.values)]) for s in vec],
                     ctx.steps)

    def label_replace(self, args: list[pp.Expr], ctx: Ctx) -> list[Series]:
        vec = self.vector(args[0], ctx)
        dst, repl, src, regex = (string_arg(a) for a in args[1:5])
        pattern = functions.compile_regex(regex, "label_replace")
        if not _label_name(dst):
            raise ExecutionError(f"invalid destination label name in label_replace(): {dst}")
        out = []
        for s in vec:
            match = pattern.match(get(s.labels, src))
            if match is None:
                out.append(s)
                continue
            result = functions.expand(repl, match)
            labels = dict(s.labels)
            labels.pop(dst, None)
            if result:
                labels[dst] = result
            out.append(Series(tuple(sorted(labels.items())), s.values))
        return self._per_step_unique(out, ctx)

    def label_join(self, args: list[pp.Expr], ctx: Ctx) -> list[Series]:
        vec = self.vector(args[0], ctx)
        dst, sep = string_arg(args[1]), string_arg(args[2])
        sources = [string_arg(a) for a in args[3:]]
        for src in sources:
            if not _label_name(src):
                raise ExecutionError(f"invalid source label name in label_join(): {src}")
        if not _label_name(dst):
            raise ExecutionError(f"invalid destination label name in label_join(): {dst}")
        out = []
        for s in vec:
            joined = sep.join(get(s.labels, src) for src in sources)
            labels = dict(s.labels)
            labels.pop(dst, None)
            if joined:
                labels[dst] = joined
            out.append(Series(tuple(sorted(labels.items())), s.values))
        return self._per_step_unique(out, ctx)

    def _per_step_unique(self, series: list[Series], ctx: Ctx) -> list[Series]:
        return merge(series, ctx.steps)

    def histogram_quantile(self, args: list[pp.Expr], ctx: Ctx) -> list[Series]:
        qs = self.scalar(args[0], ctx)
        vec = self.vector(args[1], ctx)

        def step(i: int, vector: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
            groups: dict[Labels, list[tuple[float, float]]] = {}
            for labels, v in vector:
                bound = functions.parse_bound(get(labels, "le"))
                if bound is None:
                    continue
                key = tuple(p for p in labels if p[0] not in (NAME, "le"))
                groups.setdefault(key, []).append((bound, v))
            return [(key, functions.bucket_quantile(qs[i], buckets))
                    for key, buckets in groups.items()]

        return self.per_step(ctx, [vec], step)

    # -- aggregation -------------------------------------------------------------------

    def aggregate(self, node: pp.AggregateExpr, ctx: Ctx) -> list[Series]:
        op = str(node.op)
        grouping: list[str] = []
        without = False
        if node.modifier is not None:
            grouping = sorted(node.modifier.labels)
            without = node.modifier.type == pp.AggModifierType.Without
        param_node = unwrap(node.param) if node.param is not None else None
        string_param: str | None = None
        scalar_param: list[float] | None = None
        if op == "count_values":
            if not isinstance(param_node, pp.StringLiteral):
                raise BadQuery("count_values() needs a string parameter")
            string_param = param_node.val
        elif op in ("topk", "bottomk", "quantile"):
            if param_node is None:
                raise BadQuery(f"{op}() needs a parameter")
            scalar_param = self.scalar(param_node, ctx)
        vec = self.vector(node.expr, ctx)

        def step(i: int, vector: list[tuple[Labels, float]]) -> list[tuple[Labels, float]]:
            param: float | str | None = string_param
            if scalar_param is not None:
                param = scalar_param[i]
            return aggregations.aggregate(op, grouping, without, param, vector)

        return self.per_step(ctx, [vec], step)

    # -- binary operators --------------------------------------------------------------

    def binary(self, node: pp.BinaryExpr, ctx: Ctx) -> Value:
        op = str(node.op)
        modifier = node.modifier
        return_bool = bool(modifier and modifier.return_bool)
        lt, rt = value_type(node.lhs), value_type(node.rhs)
        if lt == "scalar" and rt == "scalar":
            a, b = self.scalar(node.lhs, ctx), self.scalar(node.rhs, ctx)
            return Scalar([binops.scalar_op(op, x, y) for x, y in zip(a, b, strict=True)])
        if lt == "vector" and rt == "vector":
            lhs, rhs = self.vector(node.lhs, ctx), self.vector(node.rhs, ctx)
            matching = _matching(modifier, op)
            if op in binops.SET:
                return self.per_step(ctx, [lhs, rhs],
                                     lambda i, a, b: binops.set_op(op, a, b, matching))
            return self.per_step(ctx, [lhs, rhs], lambda i, a, b: binops.vector_vector(
                op, a, b, matching, return_bool))
        if lt == "vector" and rt == "scalar":
            vec, sc, swap = self.vector(node.lhs, ctx), self.scalar(node.rhs, ctx), False
        elif lt == "scalar" and rt == "vector":
            sc, vec, swap = self.scalar(node.lhs, ctx), self.vector(node.rhs, ctx), True
        else:
            raise BadQuery(f"binary operator {op} is not defined between {lt} and {rt}")
        if op in binops.SET:
            raise BadQuery(f"set operator {op} not allowed in binary scalar expression")
        return self.per_step(ctx, [vec], lambda i, v: binops.vector_scalar(
            op, v, sc[i], swap, return_bool))


def _matching(modifier: pp.BinModifier | None, op: str) -> binops.Matching:
    if modifier is None:
        card = "many-to-many" if op in binops.SET else "one-to-one"
        return binops.Matching(card, False, (), ())
    # The parser's enums do not hash: keyed by their text.
    card = {"OneToOne": "one-to-one", "ManyToOne": "many-to-one", "OneToMany": "one-to-many",
            "ManyToMany": "many-to-many"}[str(modifier.card).rsplit(".", 1)[-1]]
    if op in binops.SET:
        card = "many-to-many"
    on, names = False, ()
    if modifier.matching is not None:
        on = modifier.matching.type == pp.LabelModifierType.Include
        names = tuple(modifier.matching.labels)
    return binops.Matching(card, on, names, tuple(modifier.group_labels or ()))


def string_arg(node: pp.Expr) -> str:
    node = unwrap(node)
    if not isinstance(node, pp.StringLiteral):
        raise BadQuery(f"expected a string literal, got {node}")
    return node.val


def _label_name(name: str) -> bool:
    return bool(name) and (name[0].isascii() and (name[0].isalpha() or name[0] == "_")) and all(
        c.isascii() and (c.isalnum() or c == "_") for c in name)


def absent_labels(node: pp.Expr | None) -> Labels:
    """The labels absent() gives: those matched by exactly one equality matcher."""
    node = unwrap(node) if node is not None else None
    if isinstance(node, pp.MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, pp.VectorSelector):
        return ()
    labels: dict[str, str] = {}
    has: set[str] = set()
    for m in node.matchers.matchers:
        if m.name == NAME:
            continue
        if m.op == pp.MatchOp.Equal and m.name not in has:
            labels[m.name] = m.value
            has.add(m.name)
        else:
            labels.pop(m.name, None)
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def sort_vector(vec: list[Series], descending: bool) -> list[Series]:
    def key(s: Series) -> tuple[int, float]:
        v = s.values[0]
        assert v is not None
        if math.isnan(v):
            return (1, 0.0)
        return (0, -v if descending else v)
    return sorted([s for s in vec if s.values[0] is not None], key=key)
