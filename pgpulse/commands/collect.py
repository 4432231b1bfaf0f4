"""``pgpulse collect``: the host collector in the foreground, or one snapshot.

``pgpulse collect`` samples this host every COLLECTOR_INTERVAL seconds into the
spool and ships the spool to the sink until SIGTERM or Ctrl-C, then flushes.
``pgpulse collect --once`` prints one snapshot as JSON and writes nothing.
The agent itself lives in collector/main.py (also ``python -m collector``).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("collect", help="run the host collector in the foreground")
    p.add_argument(
        "--once",
        action="store_true",
        help="print one snapshot of this host as JSON and exit (writes nothing)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from collector.main import run as run_agent

    return run_agent(once=args.once)
