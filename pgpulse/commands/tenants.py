"""``pgpulse tenants create|list|show|set|delete``: the tenants that own keys and data.

A single-user install has the ``default`` tenant and needs none of this. Each
change is recorded in the audit log (``pgpulse audit``) as ``cli:<user>``.
Overrides of the global settings (``--max-series`` and the rest) take a whole
number, or ``none`` to fall back to the global setting again.
"""

from __future__ import annotations

import argparse
import json
import sys

from pgpulse.db import connect
from pgpulse.runtime import database
from pgpulse.settings import load_core

# (flag, column, help)
OVERRIDE_FLAGS = (
    ("--max-series", "max_series", "series the tenant may hold (PROXY_MAX_SERIES)"),
    ("--max-series-per-metric", "max_series_per_metric",
     "series one metric of the tenant may hold (PROXY_MAX_SERIES_PER_METRIC)"),
    ("--raw-retention-days", "raw_retention_days", "days of raw data kept for the tenant"),
    ("--retention-5m-days", "retention_5m_days", "days of the 5m tier kept for the tenant"),
    ("--retention-1h-days", "retention_1h_days", "days of the 1h tier kept for the tenant"),
    ("--monthly-sample-quota", "monthly_sample_quota", "samples the tenant may store per month"),
)


def _override(text: str) -> int | None:
    if text.lower() in ("none", "null", "default"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'none', got {text!r}") from None
    if value < 0 or value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 or 'none', got {text!r}")
    return value


def _add_overrides(p) -> None:
    for flag, column, help_text in OVERRIDE_FLAGS:
        p.add_argument(flag, dest=column, type=_override, default=argparse.SUPPRESS,
                       metavar="N|none", help=help_text + " ('none': the global setting)")


def register(sub) -> None:
    p = sub.add_parser("tenants", help="create, list, change and delete tenants")
    verbs = p.add_subparsers(dest="tenants_command", required=True, metavar="ACTION")
    c = verbs.add_parser("create", help="create a tenant")
    c.add_argument("id", help="the tenant's id: [a-z0-9][a-z0-9_-]*, at most 63 characters")
    c.add_argument("--name", help="a display name (default: the id)")
    _add_overrides(c)
    c.set_defaults(func=create)
    ls = verbs.add_parser("list", help="list tenants with their overrides, keys and series")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=list_)
    sh = verbs.add_parser("show", help="one tenant as JSON")
    sh.add_argument("id")
    sh.set_defaults(func=show)
    s = verbs.add_parser("set", help="change a tenant's name or overrides")
    s.add_argument("id")
    s.add_argument("--name", help="a new display name")
    _add_overrides(s)
    s.set_defaults(func=set_)
    d = verbs.add_parser("delete", help="delete a tenant that owns no keys and no data")
    d.add_argument("id")
    d.set_defaults(func=delete)


def _overrides(args) -> dict[str, int | None]:
    return {column: getattr(args, column) for _, column, _ in OVERRIDE_FLAGS if hasattr(args, column)}


def _change(action: str, tenant_id: str, act) -> int:
    from pgpulse.store import audit
    from pgpulse.store.errors import StoreError

    with database(load_core()) as url, connect(url) as conn:
        try:
            with conn.transaction():
                result = act(conn)
        except (StoreError, ValueError) as exc:
            audit.record(conn, audit.Actor.cli(), action, target=f"tenant:{tenant_id}",
                         outcome="refused", reason=str(exc))
            conn.commit()
            print(f"pgpulse: {exc}", file=sys.stderr)
            return 1 if isinstance(exc, StoreError) else 2
        details = {k: v for k, v in result.items() if k != "created_at"} if isinstance(result, dict) else {}
        audit.record(conn, audit.Actor.cli(), action, target=f"tenant:{tenant_id}", tenant=details)
        conn.commit()
    if isinstance(result, dict):
        print(json.dumps(result, default=str, indent=2))
    return 0


def create(args) -> int:
    from pgpulse.store import tenants

    return _change("tenant.create", args.id,
                   lambda conn: tenants.create(conn, args.id, args.name, **_overrides(args)))


def set_(args) -> int:
    from pgpulse.store import tenants

    return _change("tenant.update", args.id,
                   lambda conn: tenants.update(conn, args.id, args.name, **_overrides(args)))


def delete(args) -> int:
    from pgpulse.store import tenants

    code = _change("tenant.delete", args.id, lambda conn: tenants.delete(conn, args.id))
    if code == 0:
        print(f"deleted tenant {args.id!r}")
    return code


def show(args) -> int:
    from pgpulse.store import tenants
    from pgpulse.store.errors import UnknownTenant

    with database(load_core()) as url, connect(url) as conn:
        try:
            row = tenants.get(conn, args.id)
        except UnknownTenant as exc:
            print(f"pgpulse: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(row, default=str, indent=2))
    return 0


def list_(args) -> int:
    from pgpulse.store import tenants

    with database(load_core()) as url, connect(url) as conn:
        rows = tenants.list_tenants(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'id':<20} {'name':<20} {'keys':>5} {'series':>8}  overrides")
    for r in rows:
        set_overrides = ", ".join(f"{c}={r[c]}" for _, c, _ in OVERRIDE_FLAGS if r[c] is not None)
        print(f"{r['id'][:20]:<20} {r['name'][:20]:<20} {r['keys']:>5} {r['series']:>8}  {set_overrides or '-'}")
    return 0
