"""Monthly sample quotas on the proxy's ingest views.

Every view that stores samples (JSON ingest and snapshots, remote write, OTLP,
Influx) calls :func:`charge` once, inside the transaction that wrote them and after
writing: the tenant of the request (``proxy.auth.request_tenant``) is charged the
samples the store took, against its quota (``pgpulse.store.usage``). Over the
quota, :class:`~pgpulse.store.errors.QuotaExceeded` propagates, the transaction
rolls back with the batch in it, and the error handlers answer 429 with the figures
and a ``Retry-After`` until the month ends.
"""

from __future__ import annotations

import psycopg

from pgpulse.store import usage
from proxy.auth import request_tenant
from proxy.state import state


def charge(conn: psycopg.Connection, stored: int) -> None:
    """Charge ``stored`` samples to the current request's tenant, in ``conn``'s
    transaction; raises QuotaExceeded past the tenant's monthly quota."""
    usage.charge(conn, request_tenant(), stored, state().core.monthly_sample_quota)
