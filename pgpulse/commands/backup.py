"""``pgpulse backup`` and ``pgpulse restore``: a pg_dump archive plus a manifest of
per-table row counts and checksums, restored and verified table by table."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from pgpulse import backup as backups
from pgpulse.db import connect
from pgpulse.runtime import database
from pgpulse.settings import load_core
from pgpulse.store import audit


def register(sub) -> None:
    b = sub.add_parser("backup", help="dump the database and a manifest of row counts and checksums")
    b.add_argument("--output", "-o", type=Path, metavar="DIR",
                   help="directory to write (default: backups/<UTC timestamp>)")
    b.add_argument("--pg-bin", type=Path, action="append", default=[], metavar="DIR",
                   help="a directory holding pg_dump/pg_restore to try first")
    b.set_defaults(func=run_backup)
    r = sub.add_parser("restore", help="restore a backup into an empty database and verify it")
    r.add_argument("backup_dir", type=Path, nargs="?", metavar="DIR",
                   help="the backup directory (default: the newest under backups/)")
    r.add_argument("--force", action="store_true",
                   help="replace a database that is not empty: dropped and re-created once every "
                        "check has passed (its contents are lost)")
    r.add_argument("--pg-bin", type=Path, action="append", default=[], metavar="DIR",
                   help="a directory holding pg_dump/pg_restore to try first")
    r.set_defaults(func=run_restore)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def run_backup(args) -> int:
    settings = load_core()
    out = args.output or backups.default_backup_dir()
    try:
        with database(settings) as url:
            manifest = backups.backup(url, out, pg_bin=args.pg_bin, progress=_progress)
    except backups.BackupError as exc:
        print(f"pgpulse: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backup written to {out}")
    for line in backups.describe(manifest):
        print(f"  {line}")
    return 0


def run_restore(args) -> int:
    settings = load_core()
    source = args.backup_dir or backups.latest_backup()
    if source is None:
        print("pgpulse: restore: no backup directory given and none under backups/", file=sys.stderr)
        return 2
    with database(settings) as url:
        try:
            manifest = backups.restore(url, source, force=args.force, pg_bin=args.pg_bin,
                                       progress=_progress)
        except backups.BackupError as exc:
            print(f"pgpulse: restore failed: {exc}", file=sys.stderr)
            _audit_restore(url, source, args.force, "failed", error=str(exc))
            return 1
        _audit_restore(url, source, args.force, "ok", rows=manifest.total_rows,
                       tables=len(manifest.tables))
    print(f"restored {source}: every table matches its row count and checksum")
    for line in backups.describe(manifest):
        print(f"  {line}")
    return 0


def _audit_restore(url: str, source: Path, force: bool, outcome: str, **details) -> None:
    """Record the restore in the restored (or untouched) database's audit log, after
    the checks: the row counts the manifest promises are those of the archive. A
    database without the audit log (empty, or restored from before revision 0008)
    records nothing, and says so."""
    try:
        with connect(url) as conn:
            if not audit.exists(conn):
                print("  (this database has no audit log: the restore is not recorded)", file=sys.stderr)
                return
            audit.record(conn, audit.Actor.cli(), "restore", target=str(source.resolve()),
                         outcome=outcome, force=force, **details)
            conn.commit()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"  (the restore is not recorded in the audit log: {first})", file=sys.stderr)
