"""``tenants``: who owns keys and data, and each tenant's overrides of the settings.

A tenant id is a slug (``[a-z0-9][a-z0-9_-]{0,62}``); the ``default`` tenant
exists from the migration on, and owns everything a single-user install writes.
Every other store module takes the tenant of its caller and filters by it: this
module is the only writer of ``tenants``.

Overrides (NULL: the global setting holds): ``max_series``,
``max_series_per_metric``, ``raw_retention_days``, ``retention_5m_days``,
``retention_1h_days``, ``monthly_sample_quota``.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from pgpulse.store.errors import TenantExists, TenantInUse, UnknownTenant

DEFAULT_TENANT = "default"
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
OVERRIDES = ("max_series", "max_series_per_metric", "raw_retention_days", "retention_5m_days",
             "retention_1h_days", "monthly_sample_quota")
COLUMNS = ("id", "name", "created_at", *OVERRIDES)
# The column types' ceilings: integer, and bigint for the quota.
MAXIMA = {name: 2**31 - 1 for name in OVERRIDES} | {"monthly_sample_quota": 2**63 - 1}


def id_problem(tenant_id: Any) -> str | None:
    """What is wrong with a tenant id, or None."""
    if type(tenant_id) is not str or not TENANT_ID.fullmatch(tenant_id):
        return (f"tenant id {str(tenant_id)[:70]!r} must match [a-z0-9][a-z0-9_-]* "
                "(1 to 63 characters)")
    return None


def _overrides(values: dict[str, Any]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, value in values.items():
        if name not in OVERRIDES:
            raise ValueError(f"unknown tenant setting {name!r}: expected one of {', '.join(OVERRIDES)}")
        low = 0 if name == "monthly_sample_quota" else 1
        if value is not None and (type(value) is not int or not low <= value <= MAXIMA[name]):
            raise ValueError(f"{name} must be a whole number from {low} to {MAXIMA[name]}, or null "
                             f"(got {str(value)[:30]})")
        out[name] = value
    return out


def _row(r: tuple) -> dict[str, Any]:
    return dict(zip(COLUMNS, r, strict=True))


_SELECT = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


def create(conn: psycopg.Connection, tenant_id: str, name: str | None = None, **overrides: Any) -> dict:
    """Make tenant ``tenant_id``; raises TenantExists, ValueError on bad input."""
    problem = id_problem(tenant_id)
    if problem:
        raise ValueError(problem)
    values = _overrides(overrides)
    display = (name or tenant_id).strip()
    if not display:
        raise ValueError("a tenant's name must not be empty")
    columns = ["id", "name", *values]
    row = conn.execute(
        sql.SQL("INSERT INTO tenants ({}) VALUES ({}) ON CONFLICT (id) DO NOTHING RETURNING {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)), _SELECT),
        [tenant_id, display, *values.values()],
    ).fetchone()
    if row is None:
        raise TenantExists(f"tenant {tenant_id!r} already exists", tenant=tenant_id)
    return _row(row)


def get(conn: psycopg.Connection, tenant_id: str) -> dict:
    """The tenant ``tenant_id``; raises UnknownTenant."""
    row = conn.execute(sql.SQL("SELECT {} FROM tenants WHERE id = %s").format(_SELECT),
                       (tenant_id,)).fetchone()
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}", tenant=tenant_id)
    return _row(row)


def exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = %s)", (tenant_id,)).fetchone()[0]


def list_tenants(conn: psycopg.Connection) -> list[dict]:
    """Every tenant, with how many live keys and series it owns."""
    rows = conn.execute(
        sql.SQL(
            "SELECT {}, (SELECT count(*) FROM api_keys k WHERE k.tenant_id = t.id AND k.revoked_at IS NULL), "
            "(SELECT count(*) FROM series s WHERE s.tenant_id = t.id) FROM tenants t ORDER BY id"
        ).format(sql.SQL(", ").join(sql.Identifier("t", c) for c in COLUMNS))
    ).fetchall()
    return [{**_row(r[:-2]), "keys": r[-2], "series": r[-1]} for r in rows]


def update(conn: psycopg.Connection, tenant_id: str, name: str | None = None, **overrides: Any) -> dict:
    """Change a tenant's name and overrides (a value None clears an override)."""
    values = _overrides(overrides)
    if name is not None:
        if not name.strip():
            raise ValueError("a tenant's name must not be empty")
        values = {"name": name.strip(), **values}  # type: ignore[dict-item]
    if not values:
        return get(conn, tenant_id)
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
    row = conn.execute(
        sql.SQL("UPDATE tenants SET {} WHERE id = %s RETURNING {}").format(assignments, _SELECT),
        [*values.values(), tenant_id],
    ).fetchone()
    if row is None:
        raise UnknownTenant(f"no tenant {tenant_id!r}", tenant=tenant_id)
    return _row(row)


def delete(conn: psycopg.Connection, tenant_id: str) -> None:
    """Delete a tenant that owns no keys (live or revoked) and no data."""
    if tenant_id == DEFAULT_TENANT:
        raise TenantInUse("the default tenant cannot be deleted", tenant=tenant_id)
    get(conn, tenant_id)
    # system_metrics (a hypertable on one engine) has no foreign key: asked first.
    owns_snapshots = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM system_metrics WHERE tenant_id = %s)", (tenant_id,)).fetchone()[0]
    if owns_snapshots:
        raise TenantInUse(f"tenant {tenant_id!r} still owns host snapshots", tenant=tenant_id)
    try:
        with conn.transaction():
            conn.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
    except psycopg.errors.ForeignKeyViolation:
        raise TenantInUse(f"tenant {tenant_id!r} still owns keys or data; revoke and delete them first",
                          tenant=tenant_id) from None
