"""What a PromQL query can fail with, each mapped to Prometheus's ``errorType``.

The HTTP layer turns these into Prometheus's error envelope: ``bad_data`` (400) for
a query that is wrong or asks for what is refused, ``execution`` (422) for one that
is valid but cannot be answered (many-to-many matching, too many samples),
``timeout`` (503) when it ran out of time.
"""

from __future__ import annotations


class PromQLError(ValueError):
    """Base class: ``error_type`` and ``status`` as Prometheus answers them."""

    error_type = "bad_data"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadQuery(PromQLError):
    """Syntax errors, wrong argument types, parameters out of range."""


class Unsupported(BadQuery):
    """Valid PromQL that pgpulse refuses; the message names what (docs/api.md lists it)."""


class ExecutionError(PromQLError):
    """A valid query that cannot be evaluated on this data (Prometheus: 422)."""

    error_type = "execution"
    status = 422


class QueryTimeout(PromQLError):
    """The query ran longer than its timeout."""

    error_type = "timeout"
    status = 503
