"""The agent as a process: ``pgpulse collect`` and ``python -m collector`` run this.

Both do the same; ``python -m collector`` loads only what the agent needs (the
``pgpulse`` command loads every verb's libraries first), which keeps a long-running
agent's memory small: see docs/performance.md.

In the foreground the agent samples every COLLECTOR_INTERVAL seconds into the spool
and ships the spool to the sink until SIGTERM or Ctrl-C, then flushes. ``--once``
prints one snapshot as JSON and writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time

import orjson

from collector.settings import CollectorSettings, load_collector
from pgpulse.config import SettingsError
from pgpulse.logs import setup_logging
from pgpulse.runtime import stop_on_signals
from pgpulse.settings import CoreSettings, load_core

log = logging.getLogger("collector.main")


def run(once: bool = False) -> int:
    """Run the agent until a signal (or print one snapshot); raises SettingsError."""
    core = load_core()
    settings = load_collector()
    if once:
        return print_once(settings)
    shipper = setup_logging("collector", core.log_level, core.log_format, core.loki_url)
    stop = stop_on_signals()
    try:
        if settings.sink == "postgres":
            # Imported here: the http sink needs no database driver.
            from pgpulse.runtime import database

            with database(core) as url:
                return foreground(settings, core, url, stop)
        return foreground(settings, core, None, stop)
    finally:
        if shipper is not None:
            shipper.stop()


def foreground(settings: CollectorSettings, core: CoreSettings, url: str | None, stop: threading.Event) -> int:
    """Run an agent until ``stop`` is set (or the agent fails); 0 when it ended well."""
    from collector.service import build_agent

    agent = build_agent(settings, core, url)
    agent.start()
    try:
        while not stop.wait(0.5):
            if agent.failed:
                break
    finally:
        agent.stop()
    return 1 if agent.failed else 0


def print_once(settings: CollectorSettings) -> int:
    """One snapshot on stdout; rates cover one second (or the interval, if shorter)."""
    from collector.service import host_of, sampler_of

    # stdout carries the JSON alone: probe warnings go to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="pgpulse collect: %(message)s")
    sampler = sampler_of(settings)
    sampler.sample()
    time.sleep(min(settings.interval, 1.0))
    at, doc = sampler.sample()
    row = {"host": host_of(settings), "time": at.isoformat(), "data": doc}
    sys.stdout.write(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector", description="The pgpulse host collector.")
    parser.add_argument("--once", action="store_true", help="print one snapshot as JSON and exit (writes nothing)")
    args = parser.parse_args(argv)
    try:
        return run(once=args.once)
    except SettingsError as exc:
        print(f"pgpulse: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
