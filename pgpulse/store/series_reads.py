"""Reads of the series catalogue (``series``): which series a selector matches,
discovery (series, label names, label values) and cardinality.

Not tier-aware (points over time are :mod:`pgpulse.reads`); the writer of
``series`` is the ingest path of the store.

Every read is of one tenant's series: the tenant is a parameter of each function
and a condition of each statement, so no selector, regular expression or limit can
reach, count or name another tenant's series. Sample reads take series ids found
here, and so stay within the tenant too. Every function takes a connection and
leaves the transaction to its caller. Limits arrive as arguments; a function that
may be truncated reads one row more than it returns, so the caller can say so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg import sql

from pgpulse.selector import Selector, where

SeriesRow = tuple[int, str, dict[str, str], str]  # id, name, labels, type


def _condition(selector: Selector | None, tenant: str) -> tuple[sql.Composable, list[object]]:
    """The tenant's series (that ``selector`` matches, when given)."""
    if selector is None:
        return sql.SQL("tenant_id = %s"), [tenant]
    condition, params = where(selector)
    return sql.SQL("tenant_id = %s AND {}").format(condition), [tenant, *params]


def find_series(conn: psycopg.Connection, selector: Selector, limit: int, *, tenant: str
                ) -> list[SeriesRow]:
    """(id, name, labels, type) of the series of ``tenant`` that ``selector`` matches,
    by name and id, at most ``limit`` + 1 (one more than ``limit``: too wide)."""
    condition, params = _condition(selector, tenant)
    query = sql.SQL(
        "SELECT id, name, labels, type FROM series WHERE {} ORDER BY name, id LIMIT %s"
    ).format(condition)
    return conn.execute(query, [*params, limit + 1]).fetchall()


def list_series(
    conn: psycopg.Connection, selector: Selector | None, limit: int, *, tenant: str
) -> tuple[list[tuple[int, str, dict[str, str], str, Any]], bool]:
    """(id, name, labels, type, created_at) of the series of ``tenant`` (all, or those
    ``selector`` matches), at most ``limit``, and whether there were more."""
    condition, params = _condition(selector, tenant)
    query = sql.SQL(
        "SELECT id, name, labels, type, created_at FROM series WHERE {} ORDER BY name, id LIMIT %s"
    ).format(condition)
    rows = conn.execute(query, [*params, limit + 1]).fetchall()
    return rows[:limit], len(rows) > limit


def label_names(conn: psycopg.Connection, selector: Selector | None, *, tenant: str) -> list[str]:
    """Label names in use by the series of ``tenant`` (those ``selector`` matches),
    sorted; without ``__name__``."""
    condition, params = _condition(selector, tenant)
    query = sql.SQL(
        "SELECT DISTINCT jsonb_object_keys(labels) AS k FROM series WHERE {} ORDER BY k"
    ).format(condition)
    return [r[0] for r in conn.execute(query, params).fetchall()]


def label_values(
    conn: psycopg.Connection, name: str, selector: Selector | None, limit: int, *, tenant: str
) -> tuple[list[str], bool]:
    """Distinct values of label ``name`` (``__name__``: metric names) in the series of
    ``tenant``, sorted, at most ``limit``, and whether there were more."""
    condition, params = _condition(selector, tenant)
    if name == "__name__":
        query = sql.SQL("SELECT DISTINCT name FROM series WHERE {} ORDER BY 1 LIMIT %s").format(
            condition)
        args: list[object] = [*params, limit + 1]
    else:
        query = sql.SQL(
            "SELECT DISTINCT labels ->> %s FROM series WHERE labels ? %s AND {} ORDER BY 1 LIMIT %s"
        ).format(condition)
        args = [name, name, *params, limit + 1]
    values = [r[0] for r in conn.execute(query, args).fetchall()]
    return values[:limit], len(values) > limit


def count_series(conn: psycopg.Connection, tenant: str | None) -> int:
    """Series of ``tenant`` (None: of every tenant, for the operator's own metrics)."""
    return conn.execute("SELECT count(*) FROM series WHERE %s::text IS NULL OR tenant_id = %s",
                        (tenant, tenant)).fetchone()[0]


@dataclasses.dataclass(frozen=True)
class Cardinality:
    series: int
    top_metrics: list[tuple[str, int]]  # (name, series)
    top_labels: list[tuple[str, int, int]]  # (label name, series, distinct values)


def cardinality(conn: psycopg.Connection, top: int, *, tenant: str) -> Cardinality:
    """The series count of ``tenant``, and its ``top`` metrics and label names by series."""
    total = count_series(conn, tenant)
    metrics = conn.execute(
        "SELECT name, count(*) AS n FROM series WHERE tenant_id = %s "
        "GROUP BY name ORDER BY n DESC, name LIMIT %s",
        (tenant, top),
    ).fetchall()
    labels = conn.execute(
        "SELECT k, count(*) AS n, count(DISTINCT labels ->> k) AS v "
        "FROM series, jsonb_object_keys(labels) AS k WHERE tenant_id = %s "
        "GROUP BY k ORDER BY n DESC, k LIMIT %s",
        (tenant, top),
    ).fetchall()
    return Cardinality(total, [tuple(r) for r in metrics], [tuple(r) for r in labels])
