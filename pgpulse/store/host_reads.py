"""Reads of host snapshots (``system_metrics``) that are not tier-aware: which hosts
sent snapshots, and when each was last seen.

Points of a headline field over time are :mod:`pgpulse.reads`; whole snapshots
streamed out are :mod:`pgpulse.store.exports`.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from pgpulse import engine

# Distinct hosts by skipping through the (host, time) index instead of reading every
# snapshot, then each host's newest time from the same index.
# With the (tenant, host, time) index, the same skip within one tenant.
_HOSTS_SQL = """
WITH RECURSIVE hosts(host) AS (
    (SELECT host FROM system_metrics WHERE tenant_id = %(tenant)s ORDER BY host LIMIT 1)
    UNION ALL
    SELECT (SELECT m.host FROM system_metrics m WHERE m.tenant_id = %(tenant)s AND m.host > h.host
            ORDER BY m.host LIMIT 1)
    FROM hosts h WHERE h.host IS NOT NULL
)
SELECT h.host, (SELECT max(m.time) FROM system_metrics m
                WHERE m.tenant_id = %(tenant)s AND m.host = h.host) AS last_seen
FROM hosts h WHERE h.host IS NOT NULL ORDER BY h.host
"""

# Citus plans no recursive CTE over a distributed table without a filter on its
# distribution column: there the shards group their own hosts (``system_metrics`` is
# distributed by host, so a host's rows are all in one shard), in parallel.
_HOSTS_DISTRIBUTED_SQL = """
SELECT host, max(time) AS last_seen FROM system_metrics
WHERE tenant_id = %(tenant)s GROUP BY host ORDER BY host
"""


def list_hosts(conn: psycopg.Connection, *, tenant: str) -> list[tuple[str, datetime]]:
    """(host, time of its newest snapshot) of the hosts of ``tenant``, by host."""
    query = _HOSTS_DISTRIBUTED_SQL if engine.distributed(conn) else _HOSTS_SQL
    return [tuple(r) for r in conn.execute(query, {"tenant": tenant}).fetchall()]
