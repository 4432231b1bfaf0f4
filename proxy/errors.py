"""The one shape of every error the proxy answers: ``{"error": "...", ...details}``.

Views raise :class:`ApiError` (or call :func:`error_response`); the store's domain
errors map to statuses here and only here (:data:`STORE_STATUS`); the handlers
registered by :func:`register` turn everything else (unknown routes, wrong methods,
oversized bodies, a database that is down, a bug) into the same shape, so no client
ever has to parse an HTML error page.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import psycopg
from flask import Flask, Response
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException

from pgpulse.store.errors import (
    CardinalityExceeded,
    IdempotencyConflict,
    InvalidSample,
    QuotaExceeded,
    StoreError,
    TenantExists,
    TenantInUse,
    TypeConflict,
    UnknownKey,
    UnknownTenant,
)

log = logging.getLogger("proxy.errors")


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
_INT64 = range(-(2**63), 2**64)  # what orjson writes as a number by itself


def _big_ints_as_fragments(value: Any) -> Any:
    """``value`` with integers beyond 64 bits made raw JSON numbers: they are valid
    JSON (stored data holds them, e.g. a double of 1e308 read back from jsonb), and
    orjson refuses them."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {k: _big_ints_as_fragments(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_as_fragments(v) for v in value]
    return value


def json_dumps(body: Any) -> bytes:
    """``body`` as JSON bytes: orjson, datetimes as RFC 3339, integers of any size."""
    try:
        return orjson.dumps(body, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        return orjson.dumps(_big_ints_as_fragments(body), option=_JSON_OPTIONS)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson (datetimes become RFC 3339)."""
    return Response(json_dumps(body), status=status, mimetype="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> Response:
    """The error body every endpoint uses: ``{"error": message, **details}``."""
    return json_response({"error": message, **details}, status, headers)


class ApiError(Exception):
    """An error with its HTTP status and details; raise it anywhere in a request."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.details = details

    def response(self) -> Response:
        return error_response(self.status, self.message, self.headers, **self.details)


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, message, **details)


def rate_limited(message: str, *, limit: int, remaining: int, reset_s: int, **details: Any) -> ApiError:
    """A 429 over a rate limit: ``Retry-After`` and the ``RateLimit-Limit``,
    ``RateLimit-Remaining`` and ``RateLimit-Reset`` headers (seconds until the window
    resets), the same figures in the body."""
    headers = {
        "Retry-After": str(reset_s),
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset_s),
    }
    return ApiError(429, message, headers=headers, limit=limit, remaining=remaining,
                    retry_after=reset_s, **details)


# What each refusal of the store answers over HTTP; the body is the error's message
# and details, so a client sees what the store said.
STORE_STATUS: dict[type[StoreError], int] = {
    InvalidSample: 400,
    UnknownKey: 401,
    TypeConflict: 409,
    IdempotencyConflict: 409,
    CardinalityExceeded: 429,
    UnknownTenant: 404,
    TenantExists: 409,
    TenantInUse: 409,
    QuotaExceeded: 429,
}


def store_status(exc: StoreError) -> int:
    """The HTTP status of a store error (the nearest mapped class; 400 by default)."""
    for cls in type(exc).__mro__:
        if cls in STORE_STATUS:
            return STORE_STATUS[cls]
    return 400


def store_headers(exc: StoreError) -> dict[str, str] | None:
    """Headers of a store refusal: a quota refusal says when to try again (its reset)."""
    if isinstance(exc, QuotaExceeded):
        return {"Retry-After": str(exc.details["retry_after"])}
    return None


def store_error_response(exc: StoreError) -> Response:
    return error_response(store_status(exc), exc.message, store_headers(exc), **exc.details)


class DatabaseUnavailable(ApiError):
    def __init__(self, reason: str) -> None:
        super().__init__(503, "database unavailable", headers={"Retry-After": "5"}, reason=reason)


_HTTP_MESSAGES = {
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}


def _primary(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    return (diag.message_primary if diag is not None else None) or type(exc).__name__


def register(app: Flask) -> None:
    """Install the handlers that give every error the JSON shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return exc.response()

    @app.errorhandler(StoreError)
    def _store_error(exc: StoreError) -> Response:
        return store_error_response(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = _HTTP_MESSAGES.get(status, (exc.name or "error").lower())
        details: dict[str, Any] = {}
        headers: dict[str, str] = {}
        allowed = getattr(exc, "valid_methods", None)
        if status == 405 and allowed:
            details["allowed"] = sorted(allowed)
            headers["Allow"] = ", ".join(sorted(allowed))
        if status == 413:
            details["limit_bytes"] = app.config.get("MAX_CONTENT_LENGTH")
        return error_response(status, message, headers or None, **details)

    @app.errorhandler(PoolTimeout)
    def _pool_timeout(exc: PoolTimeout) -> Response:
        log.warning("no database connection available: %s", exc)
        return DatabaseUnavailable("no connection available in time").response()

    @app.errorhandler(psycopg.OperationalError)
    def _db_down(exc: psycopg.OperationalError) -> Response:
        # The message of an OperationalError may name host and database but never
        # the password; still, clients get only the class of the fault.
        log.warning("database error: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return DatabaseUnavailable(type(exc).__name__).response()

    @app.errorhandler(psycopg.errors.InvalidRegularExpression)
    def _bad_regex(exc: psycopg.Error) -> Response:
        return error_response(400, f"invalid regular expression in a matcher: {_primary(exc)}",
                              parameter="query")

    @app.errorhandler(psycopg.errors.QueryCanceled)
    def _cancelled(exc: psycopg.Error) -> Response:
        return error_response(503, "query cancelled: it ran longer than the statement timeout",
                              setting="PROXY_STATEMENT_TIMEOUT_MS")

    @app.errorhandler(psycopg.DataError)
    def _data_error(exc: psycopg.Error) -> Response:
        # Input the checks let through but PostgreSQL refused; the transaction rolled back.
        return error_response(400, f"invalid input: {_primary(exc)}")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug: log it with its traceback, answer in the same JSON shape.
        log.exception("unhandled error")
        return error_response(500, "internal error")
