"""Reads of the series catalogue (``series``): which series a selector matches,
discovery (series, label names, label values) and cardinality.

Not tier-aware (points over time are :mod:`pgpulse.reads`); the writer of
``series`` is the ingest path of the store. Every function takes a connection and
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


def _condition(selector: Selector | None) -> tuple[sql.Composable, list[object]]:
    return (sql.SQL("TRUE"), []) if selector is None else where(selector)


def find_series(conn: psycopg.Connection, selector: Selector, limit: int) -> list[SeriesRow]:
    """(id, name, labels, type) of the series ``selector`` matches, by name and id,
    at most ``limit`` + 1 (one more than ``limit``: the match is too wide)."""
    condition, params = where(selector)
    query = sql.SQL(
        "SELECT id, name, labels, type FROM series WHERE {} ORDER BY name, id LIMIT %s"
    ).format(condition)
    return conn.execute(query, [*params, limit + 1]).fetchall()


def list_series(
    conn: psycopg.Connection, selector: Selector | None, limit: int
) -> tuple[list[tuple[int, str, dict[str, str], str, Any]], bool]:
    """(id, name, labels, type, created_at) of the series (all, or those ``selector``
    matches), at most ``limit``, and whether there were more."""
    condition, params = _condition(selector)
    query = sql.SQL(
        "SELECT id, name, labels, type, created_at FROM series WHERE {} ORDER BY name, id LIMIT %s"
    ).format(condition)
    rows = conn.execute(query, [*params, limit + 1]).fetchall()
    return rows[:limit], len(rows) > limit


def label_names(conn: psycopg.Connection, selector: Selector | None) -> list[str]:
    """Label names in use (by the series ``selector`` matches), sorted; without ``__name__``."""
    condition, params = _condition(selector)
    query = sql.SQL(
        "SELECT DISTINCT jsonb_object_keys(labels) AS k FROM series WHERE {} ORDER BY k"
    ).format(condition)
    return [r[0] for r in conn.execute(query, params).fetchall()]


def label_values(
    conn: psycopg.Connection, name: str, selector: Selector | None, limit: int
) -> tuple[list[str], bool]:
    """Distinct values of label ``name`` (``__name__``: metric names), sorted, at most
    ``limit``, and whether there were more."""
    condition, params = _condition(selector)
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


def count_series(conn: psycopg.Connection) -> int:
    """Series in the catalogue."""
    return conn.execute("SELECT count(*) FROM series").fetchone()[0]


@dataclasses.dataclass(frozen=True)
class Cardinality:
    series: int
    top_metrics: list[tuple[str, int]]  # (name, series)
    top_labels: list[tuple[str, int, int]]  # (label name, series, distinct values)


def cardinality(conn: psycopg.Connection, top: int) -> Cardinality:
    """The series count, and the ``top`` metrics and label names by series."""
    total = count_series(conn)
    metrics = conn.execute(
        "SELECT name, count(*) AS n FROM series GROUP BY name ORDER BY n DESC, name LIMIT %s",
        (top,),
    ).fetchall()
    labels = conn.execute(
        "SELECT k, count(*) AS n, count(DISTINCT labels ->> k) AS v "
        "FROM series, jsonb_object_keys(labels) AS k GROUP BY k ORDER BY n DESC, k LIMIT %s",
        (top,),
    ).fetchall()
    return Cardinality(total, [tuple(r) for r in metrics], [tuple(r) for r in labels])
