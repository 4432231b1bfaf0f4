"""``usage_monthly``: samples stored per tenant and month, and the monthly quota.

The one writer of ``usage_monthly`` (revision 0009). Every ingest path calls
:func:`charge` in the transaction that writes its samples, after writing them: the
count and the samples commit together or not at all, so usage never disagrees with
the data and survives a restart.

A batch that would take the tenant past its quota raises :class:`QuotaExceeded`
(with the figures) and, the caller's transaction rolling back, nothing of it stays.
Concurrent batches of one tenant cannot overshoot: the upsert takes the row lock of
(tenant, month), and a second writer waits for the first to commit, then checks
its batch against the committed count (``ON CONFLICT DO UPDATE ... WHERE`` reads
the newest row version under READ COMMITTED). The lock is taken last in the
transaction, so writers of one tenant queue only for the commit, not for the write.

A sample counts each time a batch writes it: a sample sent again (a retry without
an idempotency key, an overwrite) counts again, as it costs a write again.

Months are calendar months in UTC, by the database's clock; the quota resets at
00:00 UTC on the first day of the next month.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import psycopg

from pgpulse.store.errors import QuotaExceeded

# Every statement takes the month from the database's clock at the transaction's
# start (now()): one month for the whole batch, whichever process's clock is off.
CHARGE = """
    INSERT INTO usage_monthly AS u (tenant, month, samples)
    SELECT %(tenant)s, date_trunc('month', now() AT TIME ZONE 'UTC')::date, %(n)s
    WHERE %(quota)s::bigint IS NULL OR %(n)s <= %(quota)s
    ON CONFLICT (tenant, month) DO UPDATE SET samples = u.samples + EXCLUDED.samples
        WHERE %(quota)s::bigint IS NULL OR u.samples + EXCLUDED.samples <= %(quota)s
    RETURNING samples
"""
USED = """
    SELECT m.month, coalesce(u.samples, 0)
    FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date AS month) AS m
    LEFT JOIN usage_monthly u ON u.tenant = %(tenant)s AND u.month = m.month
"""
MONTHS = """
    SELECT m::date, coalesce(u.samples, 0)
    FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC')
                             - make_interval(months => %(back)s),
                         date_trunc('month', now() AT TIME ZONE 'UTC'),
                         interval '1 month') AS m
    LEFT JOIN usage_monthly u ON u.tenant = %(tenant)s AND u.month = m::date
    ORDER BY m DESC
"""
MAX_MONTHS = 120

QUOTA = "SELECT monthly_sample_quota FROM tenants WHERE id = %(tenant)s"


def quota(conn: psycopg.Connection, tenant: str, default: int) -> int | None:
    """The monthly sample quota of ``tenant``: its own (``tenants.monthly_sample_quota``)
    when it has one, else ``default`` (PGPULSE_MONTHLY_SAMPLE_QUOTA); None for
    unlimited. In both places 0 means unlimited, as the setting's default does.

    The one place a quota is read.
    """
    row = conn.execute(QUOTA, {"tenant": tenant}).fetchone()
    own = row[0] if row is not None else None
    chosen = default if own is None else own
    return chosen or None


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def reset_time(month: date) -> datetime:
    """When the quota of ``month`` resets: 00:00 UTC on the first of the next month."""
    nxt = next_month(month)
    return datetime(nxt.year, nxt.month, 1, tzinfo=UTC)


def charge(conn: psycopg.Connection, tenant: str, n: int, default_quota: int) -> int:
    """Count ``n`` samples stored for ``tenant`` this month, in the caller's
    transaction; returns the month's new total (0 when ``n`` is 0: a batch that stored
    nothing takes no lock and counts nothing). Raises :class:`QuotaExceeded` when
    the total would pass the tenant's quota (nothing counted; the caller's
    transaction must roll back so its samples go too)."""
    if n <= 0:
        return 0
    limit = quota(conn, tenant, default_quota)
    row = conn.execute(CHARGE, {"tenant": tenant, "n": n, "quota": limit}).fetchone()
    if row is not None:
        return row[0]
    month, used = conn.execute(USED, {"tenant": tenant}).fetchone()
    reset = reset_time(month)
    retry_after = max(1, int((reset - datetime.now(UTC)).total_seconds()) + 1)
    raise QuotaExceeded(
        f"monthly sample quota exceeded: tenant {tenant!r} stored {used} of {limit} samples in "
        f"{month:%Y-%m}; this batch of {n} would pass it and was refused whole (nothing "
        f"stored). The quota resets at {reset:%Y-%m-%dT%H:%M:%SZ}.",
        tenant=tenant, used=used, quota=limit, batch=n, month=month.isoformat(),
        reset=reset.isoformat().replace("+00:00", "Z"), retry_after=retry_after,
    )


@dataclasses.dataclass(frozen=True)
class MonthUsage:
    month: date
    samples: int


def months(conn: psycopg.Connection, tenant: str, count: int) -> list[MonthUsage]:
    """The usage of ``tenant`` in the current month and the ``count - 1`` months
    before, newest first; a month without writes has 0."""
    if not 1 <= count <= MAX_MONTHS:
        raise ValueError(f"months must be between 1 and {MAX_MONTHS}")
    rows = conn.execute(MONTHS, {"tenant": tenant, "back": count - 1}).fetchall()
    return [MonthUsage(month, samples) for month, samples in rows]
