"""The ``pgpulse`` command: the composition root that brings core, collector and
proxy together. Every verb lives in ``pgpulse/commands/``."""

from __future__ import annotations

import argparse
import sys

import psycopg

from pgpulse.commands import ALL
from pgpulse.config import SettingsError
from pgpulse.engine import EngineError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgpulse",
        description="PostgreSQL-centred observability: metrics, logs and readings in one database.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in ALL:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except SettingsError as exc:
        print(f"pgpulse: configuration error: {exc}", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"pgpulse: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        # One line, never a traceback. The message names host and database, never
        # the password.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _unreachable(exc):
            print(f"pgpulse: cannot reach the database: {first}", file=sys.stderr)
        else:
            print(f"pgpulse: database error: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _unreachable(exc: psycopg.Error) -> bool:
    """A failure to connect (no SQLSTATE from libpq; connection, authorisation or
    unknown-database classes), as opposed to an error a statement met."""
    return isinstance(exc, psycopg.OperationalError) and (
        exc.sqlstate is None or exc.sqlstate[:2] in ("08", "28", "3D")
    )


if __name__ == "__main__":
    sys.exit(main())
