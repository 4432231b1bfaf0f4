"""API keys on requests: read from headers, checked, and required by views.

Keys are made and stored by :mod:`pgpulse.store.keys`. Keys travel in a header,
never in the URL, where proxies and logs would keep them:

* ``Authorization: Bearer <key>`` (Prometheus's ``authorization`` block, Grafana, curl);
* ``Authorization: Basic base64(<any user>:<key>)``: the key is the password, as
  Prometheus's ``basic_auth`` and Influx 1.x clients send credentials;
* ``Authorization: Token <key>``: what InfluxDB 2.x clients and Telegraf send;
* ``X-API-Key: <key>``.

Views declare what they need with ``@require_scope("query")`` (or "ingest",
"admin"); an admin key may do everything. With PGPULSE_AUTH=off the decorator lets
every request through.

Tenants: a request acts for its key's tenant (:func:`request_tenant`), whose data
alone the store lets it read and write. An admin key may act for another tenant by
naming it in ``X-Scope-OrgID`` (the header of Grafana Mimir and Loki); any other key
may name only its own. With PGPULSE_AUTH=off the header picks the tenant, and
without it the request acts for the default tenant.

Wrong or revoked keys and malformed credentials count against the failed
authentications of the client address (``proxy.ratelimit``); views of the ``query``
scope are charged one request of the query rate limits here, after authentication.
"""

from __future__ import annotations

import base64
import binascii
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from pgpulse.store import keys, tenants
from pgpulse.store.audit import Actor
from pgpulse.store.errors import UnknownKey, UnknownTenant
from pgpulse.store.keys import KEY_PATTERN, SCOPES, hash_key
from proxy import ratelimit
from proxy.errors import ApiError
from proxy.state import state

# Query parameters that look like an attempt to pass a key in the URL.
KEY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key"})

F = TypeVar("F", bound=Callable[..., Any])


# -- requests ----------------------------------------------------------------------


def presented_key() -> str | None:
    """The key of the current request, from its headers (None when there is none)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme == "basic" and credentials:
            return _basic_password(credentials)
        if scheme in ("bearer", "token") and credentials:
            return credentials
        raise ApiError(401, "unsupported Authorization header: use 'Bearer <key>', 'Token <key>' "
                            "or Basic with the key as the password",
                       headers={"WWW-Authenticate": "Bearer"})
    key = request.headers.get("X-API-Key")
    return key.strip() if key and key.strip() else None


def _basic_password(credentials: str) -> str:
    """The password of Basic credentials: pgpulse keys carry no user name, so any
    user name (Prometheus's ``basic_auth.username``) is accepted and ignored."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    _, colon, password = decoded.partition(":")
    if not colon or not password:
        raise ApiError(401, "malformed Basic credentials: send base64('<user>:<key>') with the key as the password",
                       headers={"WWW-Authenticate": "Bearer"})
    return password


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


TENANT_HEADER = "X-Scope-OrgID"


def _verify(key: str) -> tuple[int, frozenset[str], str]:
    st = state()
    digest = hash_key(key)
    now = time.monotonic()
    cached = st.key_cache.get(digest)
    if cached and cached[0] > now:
        return cached[1], cached[2], cached[3]
    # Runs at most once per cache period per key and process; an address that used up
    # its failed authentications is refused before the database is asked.
    ratelimit.check_auth_failures()
    try:
        with st.connection() as conn:
            key_id, scopes, tenant = keys.verify(conn, digest)
    except UnknownKey as exc:
        st.key_cache.pop(digest, None)
        ratelimit.auth_failed()
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    entry = (now + st.settings.key_cache_s, key_id, scopes, tenant)
    if st.settings.key_cache_s > 0:
        with st.lock:
            if len(st.key_cache) > 10_000:  # bounded: a flood of keys cannot grow it
                st.key_cache.clear()
            st.key_cache[digest] = entry
    return entry[1], entry[2], entry[3]


def _named_tenant() -> str | None:
    """The tenant ``X-Scope-OrgID`` names (None: no header); 400 when malformed."""
    named = request.headers.get(TENANT_HEADER)
    if named is None:
        return None
    named = named.strip()
    problem = tenants.id_problem(named)
    if problem:
        raise ApiError(400, f"{TENANT_HEADER}: {problem}", header=TENANT_HEADER)
    return named


def _check_tenant_exists(tenant: str) -> None:
    with state().connection() as conn:
        if not tenants.exists(conn, tenant):
            raise UnknownTenant(f"no tenant {tenant!r}", tenant=tenant)


def authenticate(scope: str) -> None:
    """Check the request's key for ``scope``; sets g.api_key_id (None when auth is
    off) and g.tenant, the tenant the request acts for."""
    g.api_key_id = None
    g.tenant = None
    named = _named_tenant()
    if not state().settings.auth:
        if named is not None and named != tenants.DEFAULT_TENANT:
            _check_tenant_exists(named)
        g.tenant = named or tenants.DEFAULT_TENANT
        return
    try:
        key = presented_key()
    except ApiError:
        ratelimit.auth_failed()  # malformed credentials are a failed attempt too
        raise
    if key is None:
        raise ApiError(
            401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key_id, scopes, own = _verify(key)
    if scope not in scopes and "admin" not in scopes:
        raise ApiError(403, f"this API key lacks the {scope!r} scope", required_scope=scope,
                       key_scopes=sorted(scopes))
    g.api_key_id = key_id
    g.key_tenant = own
    if named is not None and named != own:
        # The same answer whether or not the named tenant exists: a key learns
        # nothing of other tenants.
        if "admin" not in scopes:
            raise ApiError(403, f"this API key may act only for its own tenant; {TENANT_HEADER} "
                                "names another (an admin key may name any tenant)",
                           header=TENANT_HEADER)
        _check_tenant_exists(named)
    g.tenant = named or own


def request_tenant() -> str:
    """The tenant the current request acts for (set by :func:`authenticate`).

    Raises RuntimeError in a request that was not authenticated: a view reaching
    tenant data without ``require_scope`` is a bug, not the default tenant's business.
    """
    tenant = g.get("tenant")
    if tenant is None:
        raise RuntimeError("request_tenant() in a request that was not authenticated")
    return tenant


def actor() -> Actor:
    """Who makes the current request, for the audit log: its key and address."""
    return Actor.api(g.get("api_key_id"), request.remote_addr, g.get("key_tenant"))


def require_scope(scope: str) -> Callable[[F], F]:
    """Decorator: the view needs a key with ``scope`` (or admin) when auth is on."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate(scope)
            if scope == "query":
                ratelimit.charge_query()
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]  # read by the OpenAPI builder
        return wrapper  # type: ignore[return-value]

    return decorate
