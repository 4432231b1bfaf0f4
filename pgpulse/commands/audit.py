"""``pgpulse audit``: list the audit log of administrative acts, newest first.

Filters and paging as ``GET /api/audit``: ``--action key.`` (a prefix ending in a
dot, or an exact action), ``--actor``, ``--outcome``, ``--since``/``--until``
(RFC 3339), ``--limit`` and ``--before`` (the id printed at the end of a page).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from pgpulse.db import connect
from pgpulse.runtime import database
from pgpulse.settings import load_core


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RFC 3339 (2026-01-31T12:00:00Z), got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(sub) -> None:
    from pgpulse.store.audit import MAX_PAGE, OUTCOMES

    p = sub.add_parser("audit", help="list the audit log of administrative acts (newest first)")
    p.add_argument("--action", help="an action (key.create) or a prefix ending in a dot (key.)")
    p.add_argument("--actor", help="exactly this actor: key:<id>, cli:<user> or anonymous")
    p.add_argument("--outcome", choices=OUTCOMES)
    p.add_argument("--since", type=_time, help="entries at or after this time (RFC 3339)")
    p.add_argument("--until", type=_time, help="entries before this time (RFC 3339)")
    p.add_argument("--limit", type=int, default=50, help=f"entries per page (1..{MAX_PAGE}, default 50)")
    p.add_argument("--before", type=int, help="the next page: entries with a smaller id than this")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pgpulse.store import audit

    filters = audit.Filters(action=args.action, actor=args.actor, outcome=args.outcome,
                            since=args.since, until=args.until)
    try:
        filters.check()
        if not 1 <= args.limit <= audit.MAX_PAGE:
            raise ValueError(f"--limit must be between 1 and {audit.MAX_PAGE}")
    except ValueError as exc:
        print(f"pgpulse: {exc}", file=sys.stderr)
        return 2
    with database(load_core()) as url, connect(url) as conn:
        entries, cursor = audit.list_entries(conn, filters, limit=args.limit, before_id=args.before)
    if args.json:
        print(json.dumps({"entries": entries, "next_before": cursor}, default=str))
        return 0
    if not entries:
        print("no audit entries", file=sys.stderr)
    for e in entries:
        details = json.dumps(e["details"], default=str, separators=(",", ":")) if e["details"] else ""
        print(f"{e['id']:>6}  {e['at']:%Y-%m-%d %H:%M:%S}  {e['outcome']:<7} {e['action']:<14} "
              f"{e['actor']:<16} {e['target'] or '-':<12} {e['address'] or '-':<15} {details}")
    if cursor is not None:
        print(f"more: pgpulse audit --before {cursor}", file=sys.stderr)
    return 0
