"""``pgpulse keys create|list|revoke``: API keys of the proxy.

A key is printed once, when it is created; the database keeps only its hash and a
short prefix to recognise it by. Creations and revocations are recorded in the audit
log (``pgpulse audit``) as ``cli:<user>``. A key belongs to a tenant
(``--tenant``, the default tenant when not named; ``pgpulse tenants``).
"""

from __future__ import annotations

import json
import sys

from pgpulse.db import connect
from pgpulse.runtime import database
from pgpulse.settings import load_core
from pgpulse.store.errors import UnknownTenant
from pgpulse.store.keys import SCOPES
from pgpulse.store.tenants import DEFAULT_TENANT


def register(sub) -> None:
    p = sub.add_parser("keys", help="create, list and revoke API keys of the proxy")
    verbs = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    c = verbs.add_parser("create", help="create a key and print it (once)")
    c.add_argument("name", help="what the key is for (e.g. the client's name)")
    c.add_argument("--scope", dest="scopes", action="append", choices=SCOPES, required=True,
                   help="a scope of the key; repeat for several (admin may do everything)")
    c.add_argument("--tenant", default=DEFAULT_TENANT,
                   help="the tenant whose data the key reads and writes (default: %(default)s)")
    c.set_defaults(func=create)
    ls = verbs.add_parser("list", help="list keys (never the keys themselves)")
    ls.add_argument("--all", action="store_true", help="include revoked keys")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("--tenant", help="only the keys of this tenant (default: every tenant's)")
    ls.set_defaults(func=list_)
    r = verbs.add_parser("revoke", help="revoke a key by id or prefix")
    r.add_argument("key", help="the key's id or displayed prefix (pgpk_xxxxxxxx)")
    r.set_defaults(func=revoke)


def create(args) -> int:
    from pgpulse.store import audit, keys

    with database(load_core()) as url, connect(url) as conn:
        try:
            key, row = keys.create_key(conn, args.name, args.scopes, tenant=args.tenant)
        except (ValueError, UnknownTenant) as exc:
            print(f"pgpulse: {exc}", file=sys.stderr)
            return 2
        audit.record(conn, audit.Actor.cli(), "key.create", target=f"key:{row['id']}",
                     name=row["name"], scopes=row["scopes"], prefix=row["prefix"], tenant=row["tenant"])
        conn.commit()
    print(f"created key {row['id']} ({row['prefix']}…) for {row['name']!r} of tenant {row['tenant']!r}, "
          f"scopes {', '.join(row['scopes'])}",
          file=sys.stderr)
    print("the key is shown once; store it now:", file=sys.stderr)
    print(key)
    return 0


def list_(args) -> int:
    from pgpulse.store import keys

    with database(load_core()) as url, connect(url) as conn:
        rows = keys.list_keys(conn, include_revoked=args.all, tenant=args.tenant)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    print(f"{'id':>4}  {'prefix':<14} {'name':<20} {'tenant':<16} {'scopes':<20} {'created':<20} "
          f"{'last used':<20} revoked")
    for r in rows:
        def ts(v):
            return v.strftime("%Y-%m-%d %H:%M:%S") if v else "-"
        print(f"{r['id']:>4}  {r['prefix']:<14} {r['name'][:20]:<20} {r['tenant'][:16]:<16} "
              f"{','.join(r['scopes']):<20} "
              f"{ts(r['created_at']):<20} {ts(r['last_used_at']):<20} {ts(r['revoked_at'])}")
    return 0


def revoke(args) -> int:
    from pgpulse.store import audit, keys

    with database(load_core()) as url, connect(url) as conn:
        n = keys.revoke_key(conn, args.key)
        audit.record(conn, audit.Actor.cli(), "key.revoke", target=args.key,
                     outcome="ok" if n else "refused", revoked=n)
        conn.commit()
    if n == 0:
        print(f"pgpulse: no active key with id or prefix {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked {n} key(s); running proxies stop accepting it within PROXY_KEY_CACHE_SECONDS")
    return 0
