"""``metric_metadata``: the one writer of metric families' type, help and unit.

Protocols that carry metadata (Prometheus remote_write, OpenTelemetry) hand it in
with their batch; the latest word on a family wins, as in Prometheus's own
metadata API. Nothing is written when nothing changed, so a sender that repeats its
metadata in every request costs no row versions.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import psycopg

from pgpulse.store.errors import InvalidSample

TYPES = ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown")

UPSERT = """
    INSERT INTO metric_metadata AS m (tenant_id, name, type, help, unit)
    SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
    ON CONFLICT (tenant_id, name) DO UPDATE
        SET type = EXCLUDED.type, help = EXCLUDED.help, unit = EXCLUDED.unit, updated_at = now()
        WHERE (m.type, m.help, m.unit) IS DISTINCT FROM (EXCLUDED.type, EXCLUDED.help, EXCLUDED.unit)
"""
TYPES_OF = "SELECT name, type FROM metric_metadata WHERE tenant_id = %s AND name = ANY(%s)"
READ = """
    SELECT name, type, help, unit FROM metric_metadata
    WHERE tenant_id = %(tenant)s AND (%(metric)s::text IS NULL OR name = %(metric)s)
    ORDER BY name LIMIT %(limit)s
"""


def type_problem(typ: str) -> str | None:
    """Why ``typ`` is not a metadata type, or None."""
    return None if typ in TYPES else f"metric type must be one of {', '.join(TYPES)}"


def upsert(cur: psycopg.Cursor, families: Mapping[str, tuple[str, str, str]], *, tenant: str) -> int:
    """Record (type, help, unit) per family name of ``tenant``. Raises InvalidSample
    on an unknown type."""
    if not families:
        return 0
    for name, (typ, _, _) in families.items():
        problem = type_problem(typ)
        if problem:
            raise InvalidSample(f"metadata of {name}: {problem}", field="type", reason="invalid_type")
    names = sorted(families)
    cur.execute(UPSERT, (tenant, names, [families[n][0] for n in names], [families[n][1] for n in names],
                         [families[n][2] for n in names]))
    return len(names)


def read(conn: psycopg.Connection, metric: str | None = None, limit: int | None = None, *,
         tenant: str) -> list[tuple[str, str, str, str]]:
    """(name, type, help, unit) of every family of ``tenant``, or of ``metric``, by name."""
    return conn.execute(READ, {"metric": metric, "limit": limit, "tenant": tenant}).fetchall()


def types(conn: psycopg.Connection, names: Collection[str], *, tenant: str) -> dict[str, str]:
    """The recorded type of each family of ``names`` of ``tenant`` that has metadata."""
    if not names:
        return {}
    return dict(conn.execute(TYPES_OF, (tenant, list(names))).fetchall())
