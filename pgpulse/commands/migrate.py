"""``pgpulse migrate``: bring the schema to head and apply retention settings."""

from __future__ import annotations

import sys

from pgpulse.runtime import database
from pgpulse.settings import load_core


def register(sub) -> None:
    p = sub.add_parser("migrate", help="apply database migrations (and retention settings)")
    p.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL of every migration instead of running it (needs --engine)",
    )
    p.add_argument("--engine", choices=("auto", "timescale", "portable"), help="override PGPULSE_ENGINE")
    p.set_defaults(func=run)


def run(args) -> int:
    from pgpulse import schema  # Alembic and SQLAlchemy load only for this verb

    overrides = {"engine": args.engine} if args.engine else {}
    settings = load_core(**overrides)
    if args.sql:
        if settings.engine == "auto":
            print("pgpulse: --sql needs --engine timescale or --engine portable", file=sys.stderr)
            return 2
        sys.stdout.write(schema.offline_sql(settings.engine))
        return 0
    with database(settings) as url:
        mode = schema.migrate(url, settings)
    print(f"schema at {schema.head_revision()} (engine: {mode})")
    return 0
