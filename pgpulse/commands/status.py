"""``pgpulse status``: engine mode, schema version and how full and fresh each tier is."""

from __future__ import annotations

import json

from pgpulse import engine as engine_mode
from pgpulse import replica, tiers
from pgpulse.db import connect, redact
from pgpulse.runtime import database
from pgpulse.settings import load_core


def register(sub) -> None:
    p = sub.add_parser("status", help="engine mode, schema version, rows and lag per tier")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _age(lag) -> str:
    if lag is None:
        return "-"
    seconds = int(lag.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


def run(args) -> int:
    from pgpulse import schema  # Alembic loads only for the verbs that need it

    settings = load_core()
    with database(settings) as url, connect(url) as conn:
        mode = engine_mode.recorded(conn)
        current = schema.current_revision(conn)
        head = schema.head_revision()
        rows = tiers.status(conn) if mode else []
        read = None
        if settings.database_read_url:
            with connect(settings.database_read_url) as rconn:
                read = replica.lag(conn, rconn)
    if args.json:
        print(json.dumps({
            "engine": mode,
            "revision": current,
            "head": head,
            "tiers": [
                {"relation": t.relation, "tier": t.tier, "rows": t.rows,
                 "late_writes_pending": t.late_writes,
                 "newest": t.newest.isoformat() if t.newest else None,
                 "lag_seconds": t.lag.total_seconds() if t.lag is not None else None}
                for t in rows
            ],
            "replica": None if read is None else {
                "url": redact(settings.database_read_url),
                "in_recovery": read.in_recovery,
                "replay_delay_seconds": read.replay_delay.total_seconds() if read.replay_delay is not None else None,
                "bytes_behind": read.bytes_behind,
            },
        }, indent=2))
        return 0 if current == head else 1
    print(f"engine:  {mode or 'not migrated'}")
    print(f"schema:  {current or 'none'} ({'at head' if current == head else f'head is {head}: run pgpulse migrate'})")
    if read is not None:
        where = redact(settings.database_read_url)
        if read.in_recovery:
            behind = "-" if read.bytes_behind is None else f"{read.bytes_behind} bytes of WAL"
            print(f"replica: {where}, replay delay {_age(read.replay_delay)}, behind by {behind}")
        else:
            print(f"replica: {where} is not a replica (not in recovery): reads go to a primary")
    if rows:
        print(f"\n{'relation':<20} {'tier':<4} {'rows':>12}  {'newest':<26} {'lag':>8}  late writes pending")
        for t in rows:
            newest = t.newest.isoformat(timespec="seconds") if t.newest else "-"
            late = "-" if t.late_writes is None else str(t.late_writes)
            print(f"{t.relation:<20} {t.tier:<4} {t.rows:>12}  {newest:<26} {_age(t.lag):>8}  {late}")
    return 0 if current == head else 1
