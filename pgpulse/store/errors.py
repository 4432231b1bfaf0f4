"""Domain errors of the store: what a writer refuses, said without HTTP.

Each carries a message for people and ``details`` (plain JSON values) for
programs. The proxy maps them to statuses in one place (``proxy.errors``), the ETL
turns them into rejects, the CLI prints the message.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of the store's refusals: ``str(exc)`` says what, ``details`` the figures."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidSample(StoreError):
    """A sample, series name, label or snapshot that breaks a rule of the store."""


class TypeConflict(StoreError):
    """A sample declares a type other than its series' recorded type."""


class CardinalityExceeded(StoreError):
    """New series would pass a series limit (overall or per metric)."""


class UnknownKey(StoreError):
    """An API key that does not exist or was revoked."""


class IdempotencyConflict(StoreError):
    """An idempotency key already used with a different request body."""


class UnknownTenant(StoreError):
    """A tenant id that names no tenant."""


class TenantExists(StoreError):
    """A tenant id already taken."""


class TenantInUse(StoreError):
    """A tenant that still owns keys or data cannot be deleted."""


class QuotaExceeded(StoreError):
    """A batch would take a tenant past its monthly quota of stored samples."""
