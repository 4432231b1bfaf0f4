"""``api_keys``: how keys are made, stored (hashed), listed, revoked and verified.

A key is ``pgpk_`` + 43 random URL-safe characters (256 bits). Only its sha256 is
stored, with a short prefix for display: a random key of that strength needs no
slow, salted hash. This module is the only writer of ``api_keys``; the proxy's
``auth`` module reads keys from requests and asks :func:`verify`.

Every key belongs to one tenant (:mod:`pgpulse.store.tenants`): the tenant whose
data its requests read and write. Keys made without naming one belong to the
default tenant.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable

import psycopg

from pgpulse.store.errors import UnknownKey, UnknownTenant
from pgpulse.store.tenants import DEFAULT_TENANT

SCOPES = ("ingest", "query", "admin")
KEY_PREFIX = "pgpk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # what `pgpulse keys list` shows
KEY_PATTERN = re.compile(r"pgpk_[A-Za-z0-9_-]{20,}")


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> list[str]:
    out = sorted(set(scopes))
    unknown = [s for s in out if s not in SCOPES]
    if not out or unknown:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(out) or 'none'})")
    return out


def create_key(conn: psycopg.Connection, name: str, scopes: Iterable[str],
               tenant: str = DEFAULT_TENANT) -> tuple[str, dict]:
    """Store a new key of ``tenant``; returns (the key itself, shown once, and its
    stored row). Raises UnknownTenant when there is no such tenant."""
    scope_list = _check_scopes(scopes)
    if not name.strip():
        raise ValueError("a key needs a name")
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = %s)", (tenant,)).fetchone()[0]:
        raise UnknownTenant(f"no tenant {tenant!r}", tenant=tenant)
    key = generate_key()
    row = conn.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes, tenant_id) VALUES (%s, %s, %s, %s, %s) "
        "RETURNING id, name, prefix, scopes, tenant_id, created_at",
        (name, key[:PREFIX_LENGTH], hash_key(key), scope_list, tenant),
    ).fetchone()
    return key, dict(zip(("id", "name", "prefix", "scopes", "tenant", "created_at"), row, strict=True))


def list_keys(conn: psycopg.Connection, include_revoked: bool = False,
              tenant: str | None = None) -> list[dict]:
    """Keys (of ``tenant``; None: of every tenant), by id."""
    rows = conn.execute(
        "SELECT id, name, prefix, scopes, tenant_id, created_at, last_used_at, revoked_at FROM api_keys "
        "WHERE (%s OR revoked_at IS NULL) AND (%s::text IS NULL OR tenant_id = %s) ORDER BY id",
        (include_revoked, tenant, tenant),
    ).fetchall()
    cols = ("id", "name", "prefix", "scopes", "tenant", "created_at", "last_used_at", "revoked_at")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def revoke_key(conn: psycopg.Connection, ident: str, tenant: str | None = None) -> int:
    """Revoke the key whose id or display prefix is ``ident`` (a key of ``tenant``;
    None: of any tenant); returns how many."""
    key_id = int(ident) if ident.isdigit() else None
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL "
        "AND (id = %s OR prefix = %s) AND (%s::text IS NULL OR tenant_id = %s)",
        (key_id, ident, tenant, tenant),
    )
    return cur.rowcount


def verify(conn: psycopg.Connection, digest: str) -> tuple[int, frozenset[str], str]:
    """(key id, scopes, tenant) of the live key with hash ``digest``, recording its use.

    One statement checks the key and records its use. Raises UnknownKey.
    """
    row = conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL "
        "RETURNING id, scopes, tenant_id",
        (digest,),
    ).fetchone()
    if row is None:
        raise UnknownKey("invalid or revoked API key")
    return row[0], frozenset(row[1]), row[2]
