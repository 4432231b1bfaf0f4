"""API keys: how they are made, stored (hashed), checked, and required by views.

A key is ``pgpk_`` + 43 random URL-safe characters (256 bits). Only its sha256 is
stored, with a short prefix for display: a random key of that strength needs no
slow, salted hash. Keys travel in a header, ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``, never in the URL, where proxies and logs would keep them.

Views declare what they need with ``@require_scope("query")`` (or "ingest",
"admin"); an admin key may do everything. With PGPULSE_AUTH=off the decorator lets
every request through.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
from flask import g, request

from proxy.errors import ApiError
from proxy.state import state

SCOPES = ("ingest", "query", "admin")
KEY_PREFIX = "pgpk_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # what `pgpulse keys list` shows
KEY_PATTERN = re.compile(r"pgpk_[A-Za-z0-9_-]{20,}")
# Query parameters that look like an attempt to pass a key in the URL.
KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key"})

F = TypeVar("F", bound=Callable[..., Any])


# -- keys --------------------------------------------------------------------------


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


def create_key(conn: psycopg.Connection, name: str, scopes: Iterable[str]) -> tuple[str, dict]:
    """Store a new key; returns (the key itself, shown once, and its stored row)."""
    scope_list = _check_scopes(scopes)
    if not name.strip():
        raise ValueError("a key needs a name")
    key = generate_key()
    row = conn.execute(
        "INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES (%s, %s, %s, %s) "
        "RETURNING id, name, prefix, scopes, created_at",
        (name, key[:PREFIX_LENGTH], hash_key(key), scope_list),
    ).fetchone()
    return key, dict(zip(("id", "name", "prefix", "scopes", "created_at"), row, strict=True))


def list_keys(conn: psycopg.Connection, include_revoked: bool = False) -> list[dict]:
    rows = conn.execute(
        "SELECT id, name, prefix, scopes, created_at, last_used_at, revoked_at FROM api_keys "
        "WHERE %s OR revoked_at IS NULL ORDER BY id",
        (include_revoked,),
    ).fetchall()
    cols = ("id", "name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    return [dict(zip(cols, r, strict=True)) for r in rows]


def revoke_key(conn: psycopg.Connection, ident: str) -> int:
    """Revoke the key whose id or display prefix is ``ident``; returns how many."""
    key_id = int(ident) if ident.isdigit() else None
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL "
        "AND (id = %s OR prefix = %s)",
        (key_id, ident),
    )
    return cur.rowcount


# -- requests ----------------------------------------------------------------------


def presented_key() -> str | None:
    """The key of the current request, from its headers (None when there is none)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unsupported Authorization header: use 'Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        return token.strip()
    key = request.headers.get("X-API-Key")
    return key.strip() if key and key.strip() else None


def reject_key_in_query_string() -> None:
    """Before every request: a key in the URL is refused, whether or not auth is on."""
    for name, value in request.args.items(multi=True):
        if name.lower() in KEY_PARAMS or KEY_PATTERN.fullmatch(value):
            raise ApiError(
                400,
                "API keys are not accepted in the query string; send the key in the "
                "'Authorization: Bearer <key>' or 'X-API-Key' header",
                parameter=name,
            )


def _verify(key: str) -> tuple[int, frozenset[str]]:
    st = state()
    digest = hash_key(key)
    now = time.monotonic()
    cached = st.key_cache.get(digest)
    if cached and cached[0] > now:
        return cached[1], cached[2]
    # One statement checks the key and records its use; it runs at most once per
    # cache period per key and process.
    with st.connection() as conn:
        row = conn.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL "
            "RETURNING id, scopes",
            (digest,),
        ).fetchone()
    if row is None:
        st.key_cache.pop(digest, None)
        raise ApiError(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    entry = (now + st.settings.key_cache_s, row[0], frozenset(row[1]))
    if st.settings.key_cache_s > 0:
        with st.lock:
            if len(st.key_cache) > 10_000:  # bounded: a flood of keys cannot grow it
                st.key_cache.clear()
            st.key_cache[digest] = entry
    return entry[1], entry[2]


def authenticate(scope: str) -> None:
    """Check the request's key for ``scope``; sets g.api_key_id (None when auth is off)."""
    g.api_key_id = None
    if not state().settings.auth:
        return
    key = presented_key()
    if key is None:
        raise ApiError(
            401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key_id, scopes = _verify(key)
    if scope not in scopes and "admin" not in scopes:
        raise ApiError(403, f"this API key lacks the {scope!r} scope", required_scope=scope,
                       key_scopes=sorted(scopes))
    g.api_key_id = key_id


def require_scope(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a key with ``scope`` (or admin) when auth is on."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]  # read by the OpenAPI builder
        return wrapper  # type: ignore[return-value]

    return decorate
