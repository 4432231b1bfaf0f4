"""``pgpulse etl run|runs|rejects|replay``: the MongoDB -> PostgreSQL ETL by hand.

``run`` goes batch after batch until the backlog is empty, showing progress on
stderr; the other verbs look at the record and send rejects through again. This
module is a composition root: ``run`` and ``replay`` build the ETL service once,
from its settings and MongoDB at MONGO_URI.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

from pgpulse.config import SettingsError
from pgpulse.db import connect
from pgpulse.runtime import database
from pgpulse.settings import load_core


def register(sub) -> None:
    p = sub.add_parser("etl", help="run the MongoDB -> PostgreSQL ETL of readings, see runs and rejects")
    verbs = p.add_subparsers(dest="etl_command", required=True, metavar="ACTION")
    r = verbs.add_parser("run", help="run the ETL until the backlog is empty, with progress on stderr")
    r.add_argument("--max-batches", type=int, default=0, metavar="N",
                   help="stop after N batches (default 0: until the backlog is empty)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.set_defaults(func=run_command)
    ru = verbs.add_parser("runs", help="list recent runs, newest first")
    ru.add_argument("--limit", type=int, default=20, metavar="N")
    ru.add_argument("--json", action="store_true", help="print JSON")
    ru.set_defaults(func=runs_command)
    rj = verbs.add_parser("rejects", help="list rejected documents with their reasons")
    rj.add_argument("--all", action="store_true", help="include rejects that went through since")
    rj.add_argument("--limit", type=int, default=50, metavar="N")
    rj.add_argument("--json", action="store_true", help="print JSON, with the documents")
    rj.set_defaults(func=rejects_command)
    rp = verbs.add_parser("replay", help="send rejects through the ETL again (after fixing the cause)")
    rp.add_argument("ids", nargs="*", type=int, metavar="ID", help="reject ids (see `pgpulse etl rejects`)")
    rp.add_argument("--all", action="store_true", help="every open reject")
    rp.add_argument("--json", action="store_true", help="print the result as JSON")
    rp.set_defaults(func=replay_command)


def _fail(message: str, code: int = 1) -> int:
    print(f"pgpulse: {message}", file=sys.stderr)
    return code


def _etl_settings():
    from etl.settings import load_etl

    settings = load_etl()
    if not settings.configured:
        raise SettingsError("MONGO_URI is not set (nor MONGO_URI_FILE): the ETL has no source")
    return settings


@contextlib.contextmanager
def etl_service(url: str, settings: Any):
    """The ETL service of one command (MongoDB at MONGO_URI), closed when it is done."""
    from etl.service import EtlService
    from pgpulse.store.series import SeriesLimits

    service = EtlService.from_settings(url, settings, SeriesLimits.from_settings(load_core()))
    try:
        yield service
    finally:
        service.close()


class ProgressLine:
    """Progress of a run on stderr: rewritten in place on a terminal, else a line at
    most every few seconds."""

    def __init__(self, stream=None, every_s: float = 2.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = 0.2 if self.tty else every_s
        self.last = 0.0

    def __call__(self, result: Any, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every_s and result.batches > 0:
            return
        self.last = now
        rate = result.claimed / result.duration_s if result.duration_s > 0 else 0.0
        of = ""
        if result.backlog:
            of = f"/{result.backlog:,} ({100 * min(result.claimed / result.backlog, 1):.0f}%)"
        text = (f"etl: batch {result.batches}: {result.claimed:,}{of} claimed, {result.loaded:,} loaded, "
                f"{result.rejected:,} rejected, {rate:,.0f} docs/s")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else "\x1b[K"))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def run_command(args) -> int:
    from etl import runs
    from etl.source import SourceError

    settings = _etl_settings()  # a configuration error before the database is touched
    progress = None if args.quiet else ProgressLine()
    with database(load_core()) as url, etl_service(url, settings) as etl:
        try:
            result = etl.run("cli", max_batches=max(args.max_batches, 0), progress=progress)
        except runs.RunInProgress as exc:
            return _fail(f"{exc}; try again when it is done")
        except SourceError as exc:
            return _fail(f"ETL run failed: {exc}")
    if progress is not None:
        progress(result, final=True)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(f"run {result.run_id}: {result.claimed} claimed, {result.loaded} loaded "
              f"({result.inserted} new, {result.updated} changed), {result.rejected} rejected "
              f"in {result.duration_s:.1f} s" + (" (more waiting)" if result.more else ""))
        if result.warning:
            print(f"warning: {result.warning}", file=sys.stderr)
    return 0


def runs_command(args) -> int:
    from pgpulse.store import etl_runs

    with database(load_core()) as url, connect(url) as conn:
        rows = etl_runs.list_runs(conn, limit=args.limit)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for r in rows:
        took = f"{r['duration_s']:.1f}s" if r["duration_s"] is not None else "-"
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['id']}  {r['status']:<9} {r['trigger']:<8} "
              f"claimed {r['claimed']:>7} loaded {r['loaded']:>7} rejected {r['rejected']:>5}  {took}"
              + (f"  {r['error']}" if r["error"] else ""))
    return 0


def rejects_command(args) -> int:
    from pgpulse.store import etl_runs

    with database(load_core()) as url, connect(url) as conn:
        rows = etl_runs.list_rejects(conn, open_only=not args.all, limit=args.limit, with_document=args.json)
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print("no open rejects" if not args.all else "no rejects", file=sys.stderr)
    for r in rows:
        state = "open" if r["replayed_at"] is None else f"went through {r['replayed_at']:%Y-%m-%d %H:%M}"
        print(f"{r['id']:>6}  {r['created_at']:%Y-%m-%d %H:%M:%S}  {r['mongo_id']}  [{state}]  {r['reason']}")
    return 0


def replay_command(args) -> int:
    from etl import replay, runs
    from etl.source import SourceError

    if not args.ids and not args.all:
        return _fail("name reject ids to replay, or --all", 2)
    settings = _etl_settings()
    asked = {"ids": args.ids or None, "all": args.all}
    with database(load_core()) as url, etl_service(url, settings) as etl:
        try:
            result = etl.replay(args.ids or None, all_open=args.all)
        except replay.ReplayError as exc:
            _audit_replay(url, "refused", asked, error=str(exc))
            return _fail(str(exc))
        except runs.RunInProgress as exc:
            _audit_replay(url, "refused", asked, error=str(exc))
            return _fail(f"{exc}; try again when it is done")
        except SourceError as exc:
            _audit_replay(url, "failed", asked, error=str(exc))
            return _fail(f"replay failed: {exc}")
        _audit_replay(url, "ok", asked, run_id=result.run.run_id, loaded=result.run.loaded,
                      rejected=result.run.rejected)
    if args.json:
        print(json.dumps(result.as_dict(), default=str))
        return 0
    for o in result.outcomes:
        detail = o.get("reason") or o.get("status") or ""
        print(f"{o['id']:>6}  {o.get('mongo_id') or '-'}  {o['outcome']}" + (f": {detail}" if detail else ""))
    run = result.run
    print(f"replay run {run.run_id}: {run.loaded} loaded, {run.rejected} rejected again", file=sys.stderr)
    return 0


def _audit_replay(url: str, outcome: str, asked: dict[str, Any], **details: Any) -> None:
    """Record a replay in the audit log (a transaction of its own: the replay ran in
    the ETL's)."""
    from pgpulse.store import audit

    with connect(url) as conn:
        audit.record(conn, audit.Actor.cli(), "reject.replay", outcome=outcome, **asked, **details)
        conn.commit()
