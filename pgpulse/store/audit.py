"""``audit_log``: the record of every administrative act, appended and listed.

This module is the only writer of ``audit_log`` (revision 0008: the application's
role may only INSERT and SELECT there, and triggers refuse UPDATE, DELETE and
TRUNCATE to every role). An act is recorded in the caller's transaction, so an act
and its record commit together; a refused or failed act is recorded in a
transaction of its own by the caller (the act's own rolled back).

``actor`` says who: ``key:<id>`` for an API key (``actor_key_id`` holds the id),
``cli:<user>`` for the ``pgpulse`` command run by an operating-system user, or
``anonymous`` for an API running with auth off. ``address`` is the client's address
for the API, empty for the CLI.
"""

from __future__ import annotations

import dataclasses
import getpass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

OUTCOMES = ("ok", "refused", "failed")
# The acts pgpulse records; a new kind of act is a new name here.
ACTIONS = (
    "key.create",
    "key.revoke",
    "restore",
    "reject.replay",
    "tenant.create",
    "tenant.update",
    "tenant.delete",
)
MAX_PAGE = 1000
COLUMNS = ("id", "at", "actor", "actor_key_id", "action", "target", "address", "outcome", "details",
           "actor_tenant")


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who acts: an API key (``key_id``), or a user of the CLI, and from where."""

    name: str
    key_id: int | None = None
    address: str | None = None
    tenant: str | None = None  # the acting key's own tenant

    @classmethod
    def api(cls, key_id: int | None, address: str | None, tenant: str | None = None) -> Actor:
        return cls(f"key:{key_id}" if key_id is not None else "anonymous", key_id, address, tenant)

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for the uid (containers)
            user = "unknown"
        return cls(f"cli:{user}")


def record(conn: psycopg.Connection, actor: Actor, action: str, *, target: str | None = None,
           outcome: str = "ok", **details: Any) -> int:
    """Append one act to the log in the caller's transaction; returns its id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    row = conn.execute(
        "INSERT INTO audit_log (actor, actor_key_id, action, target, address, outcome, details, "
        "actor_tenant) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (actor.name, actor.key_id, action, target, actor.address, outcome, Jsonb(details), actor.tenant),
    ).fetchone()
    return row[0]


def exists(conn: psycopg.Connection) -> bool:
    """Whether this database has the audit log (a restore may leave an older schema)."""
    return conn.execute("SELECT to_regclass('audit_log') IS NOT NULL").fetchone()[0]


@dataclasses.dataclass(frozen=True)
class Filters:
    """What :func:`list_entries` selects; every field optional."""

    action: str | None = None  # an exact action, or a prefix ending in '.' ("key.")
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def check(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is after until")


def list_entries(conn: psycopg.Connection, filters: Filters, *, limit: int = 100,
                 before_id: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Entries matching ``filters``, newest first, at most ``limit``; keyset paging by
    id (pass the returned cursor as ``before_id`` for the next page, None at the end)."""
    filters.check()
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    action_exact = action_prefix = None
    if filters.action:
        if filters.action.endswith("."):
            action_prefix = filters.action
        else:
            action_exact = filters.action
    rows = conn.execute(
        "SELECT id, at, actor, actor_key_id, action, target, address, outcome, details, actor_tenant "
        "FROM audit_log WHERE (%(before)s::bigint IS NULL OR id < %(before)s) "
        "AND (%(action)s::text IS NULL OR action = %(action)s) "
        "AND (%(prefix)s::text IS NULL OR starts_with(action, %(prefix)s)) "
        "AND (%(actor)s::text IS NULL OR actor = %(actor)s) "
        "AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s) "
        "AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) "
        "AND (%(until)s::timestamptz IS NULL OR at < %(until)s) "
        "ORDER BY id DESC LIMIT %(limit)s",
        {"before": before_id, "action": action_exact, "prefix": action_prefix,
         "actor": filters.actor, "outcome": filters.outcome, "since": filters.since,
         "until": filters.until, "limit": limit + 1},
    ).fetchall()
    entries = [dict(zip(COLUMNS, r, strict=True)) for r in rows[:limit]]
    cursor = entries[-1]["id"] if len(rows) > limit else None
    return entries, cursor
