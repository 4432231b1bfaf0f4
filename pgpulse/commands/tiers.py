"""``pgpulse tiers refresh``: back-fill the 5m and 1h tiers from raw once; ``maintain``."""

from __future__ import annotations

from pgpulse import tiers
from pgpulse.runtime import database
from pgpulse.settings import load_core


def register(sub) -> None:
    p = sub.add_parser("tiers", help="work on the raw/5m/1h tiers")
    verbs = p.add_subparsers(dest="tiers_command", required=True, metavar="ACTION")
    r = verbs.add_parser(
        "refresh",
        help="re-aggregate every tier from the raw data the retention keeps, up to the last "
        "complete bucket (a back-fill: rollups on portable, continuous aggregates on timescale)",
    )
    r.set_defaults(func=refresh)
    m = verbs.add_parser("maintain", help="create partitions ahead and apply retention once")
    m.set_defaults(func=maintain)


def refresh(args) -> int:
    settings = load_core()
    with database(settings) as url:
        for relation, buckets in tiers.refresh(url, settings, backfill=True):
            print(f"{relation:<20} {'refreshed' if buckets is None else f'{buckets} buckets'}")
    return 0


def maintain(args) -> int:
    settings = load_core()
    with database(settings) as url:
        dropped = tiers.maintain(url, settings)
    print(f"maintenance done, {dropped} partitions dropped")
    return 0
