"""PromQL on pgpulse's store, with Prometheus 2.42's semantics.

* :mod:`pgpulse.promql.query`        instant and range queries, answers shaped as Prometheus's API
* :mod:`pgpulse.promql.engine`       the evaluator: one node type at a time, over all steps
* :mod:`pgpulse.promql.selection`    selectors: series by label matchers (in SQL), lookback,
                                     staleness markers, range windows
* :mod:`pgpulse.promql.functions`    functions (rate and the other range functions, math, ...)
* :mod:`pgpulse.promql.aggregations` sum, avg, topk, quantile, count_values, ...
* :mod:`pgpulse.promql.binops`       arithmetic, comparisons, set operators, vector matching
* :mod:`pgpulse.promql.gomath`       Go's floating-point results where Python raises
* :mod:`pgpulse.promql.values`       the values and their JSON form
* :mod:`pgpulse.promql.errors`       errors, each with Prometheus's errorType

Parsing is the ``promql-parser`` package's; reads go through
:mod:`pgpulse.store.series_reads` and :mod:`pgpulse.store.sample_reads`.
"""

from pgpulse.promql.errors import BadQuery, ExecutionError, PromQLError, QueryTimeout, Unsupported
from pgpulse.promql.query import Limits, Result, instant_query, range_query

__all__ = ["BadQuery", "ExecutionError", "Limits", "PromQLError", "QueryTimeout", "Result",
           "Unsupported", "instant_query", "range_query"]
