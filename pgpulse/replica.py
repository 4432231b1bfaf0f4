"""How far a streaming replica (``DATABASE_READ_URL``) is behind its primary.

Reads served by a replica see the primary's writes once the replica has replayed
them; ``pgpulse status`` shows the delay so that a stale answer has an explanation.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import psycopg

# The replay delay is the age of the last replayed transaction only while WAL
# waits to be replayed: a replica that replayed all it received is not behind,
# however long the primary has been idle.
_REPLICA = """
    SELECT pg_is_in_recovery(),
           CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                THEN interval '0' ELSE now() - pg_last_xact_replay_timestamp() END,
           pg_last_wal_replay_lsn()
"""


@dataclasses.dataclass(frozen=True)
class ReplicaLag:
    in_recovery: bool  # False: the URL names a primary, not a replica
    replay_delay: timedelta | None
    bytes_behind: int | None  # WAL the primary wrote that the replica has not replayed


def lag(primary: psycopg.Connection, replica: psycopg.Connection) -> ReplicaLag:
    """The replica's delay behind ``primary``."""
    (written,) = primary.execute("SELECT pg_current_wal_lsn()").fetchone()
    in_recovery, delay, replayed = replica.execute(_REPLICA).fetchone()
    if not in_recovery:
        return ReplicaLag(False, None, None)
    behind = None
    if replayed is not None:
        (behind,) = primary.execute("SELECT greatest(pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn), 0)::bigint",
                                    (written, replayed)).fetchone()
    return ReplicaLag(True, delay, behind)
