"""``pgpulse up``: everything that is not an external server, in one foreground
process: the database (embedded when DATABASE_URL is unset), migrations, the
scheduler, the proxy and the collector. Ctrl-C or SIGTERM stops it all cleanly,
newest part first, each flushing what it buffers.

What a newcomer needs is printed once it is up, on stderr (so that stdout stays
JSON lines where it is not a terminal): the console's URL, how to log in, where the
data lives and how to stop. On the first start of an embedded database with auth on
and no API key yet, an admin key is made and printed there, once. One ``up`` runs per
data directory (pgpulse/runinfo.py): a second one says where the first one is and
exits with ALREADY_RUNNING.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pgpulse import runinfo
from pgpulse.logs import setup_logging
from pgpulse.runtime import Service, database, run_until_stopped
from pgpulse.settings import CoreSettings, load_core

log = logging.getLogger("pgpulse.up")

ALREADY_RUNNING = 3  # the exit status of an `up` that found another one running
FIRST_KEY_NAME = "admin (made by the first pgpulse up)"


def register(sub) -> None:
    p = sub.add_parser("up", help="run pgpulse in the foreground (database, scheduler, proxy, collector)")
    p.add_argument("--no-proxy", action="store_true", help="do not run the proxy")
    p.add_argument("--no-collector", action="store_true", help="do not run the collector")
    p.set_defaults(func=run)


def build_services(url: str, settings: CoreSettings, mode: str, args) -> list[Service]:
    """The parts ``up`` runs, in start order."""
    from pgpulse.commands.scheduler import scheduler_service

    services: list[Service] = [scheduler_service(url, settings, mode)]
    if not args.no_proxy:
        from pgpulse.commands.proxy import ProxyService

        services.append(ProxyService(url))
    if not args.no_collector:
        # Last in start order, so first to stop: it flushes while the rest is up.
        from collector.service import CollectorService

        services.append(CollectorService(url, settings))
    return services


def _command() -> str:
    """How the user started pgpulse, to repeat in hints (``.venv/bin/pgpulse``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "pgpulse":
        relative = os.path.relpath(argv0)
        return relative if not relative.startswith("..") else argv0
    return "pgpulse"


def first_key(url: str, settings: CoreSettings, auth: bool) -> str | None:
    """An admin key made on the first start of an embedded database with auth on and no
    key at all (revoked ones count: they mean someone has been here); None otherwise."""
    if settings.database_url or not auth:
        return None
    from pgpulse.db import connect
    from pgpulse.store import keys

    with connect(url) as conn:
        if keys.list_keys(conn, include_revoked=True):
            return None
        key, _row = keys.create_key(conn, FIRST_KEY_NAME, ["admin"])
    log.info("made the first API key, an admin key named %r (printed once, below)", FIRST_KEY_NAME)
    return key


def _where(url: str, settings: CoreSettings) -> str:
    if not settings.database_url:
        return f"{(settings.data_dir / 'pgdata').resolve()} (embedded PostgreSQL)"
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"PostgreSQL at {info.get('host', 'localhost')}:{info.get('port', 5432)}, database {info.get('dbname', '?')}"


def banner(*, mode: str, console: str | None, auth: bool, key: str | None, where: str,
           embedded: bool) -> str:
    """The lines printed once ``up`` is up."""
    cmd = _command()
    lines = [f"pgpulse is up (engine {mode})", ""]
    if console:
        lines.append(f"  console   {console}   (open it in a browser)")
    if not console:
        lines.append("  console   not running (--no-proxy)")
    elif not auth:
        lines.append("  log in    no key needed: PGPULSE_AUTH=off")
    elif key:
        lines += [f"  log in    paste this admin key, shown only now (keep it): {key}",
                  f"            another one: {cmd} keys create NAME --scope admin"]
    else:
        lines.append(f"  log in    with an API key; make one: {cmd} keys create NAME --scope admin")
    lines.append(f"  data      {where}")
    if embedded:
        lines.append("            back up: make backup (pgpulse backup); restore: make restore")
    lines += ["  stop      Ctrl-C here (data stays); status: " + f"{cmd} status", ""]
    return "\n".join(lines)


def already_running(data_dir: Path) -> str:
    info = runinfo.running(data_dir)
    pid = info.get("pid")
    head = "pgpulse is already running"
    if pid:
        since = info.get("started")
        head += f" (pid {pid}, since {since})" if since else f" (pid {pid})"
    parts = [head]
    if info.get("console"):
        parts.append(f"console at {info['console']}")
    if info.get("data"):
        parts.append(f"data in {info['data']}")
    stop = f"`kill {pid}`" if pid else "Ctrl-C in its terminal"
    return (", ".join(parts) + f".\nStop it with Ctrl-C in its terminal or {stop} before starting "
            f"another, or give this one its own PGPULSE_DATA_DIR (and PORT).")


def run(args) -> int:
    from pgpulse import config, schema  # heavy imports (Alembic) wait until `up` really runs

    environ = config.read_environment()
    settings = load_core(environ)
    lock = runinfo.acquire(settings.data_dir)
    if lock is None:
        print(already_running(settings.data_dir), file=sys.stderr)
        return ALREADY_RUNNING
    shipper = setup_logging("pgpulse", settings.log_level, settings.log_format, settings.loki_url)
    try:
        port, auth = None, False
        if not args.no_proxy:
            from proxy.settings import load_proxy

            proxy_settings = load_proxy(environ)
            port, auth = proxy_settings.port, proxy_settings.auth
        with database(settings) as url:
            if not settings.database_url:
                log.info("no DATABASE_URL: using the embedded PostgreSQL in %s", settings.data_dir / "pgdata")
            mode = schema.migrate(url, settings)
            key = first_key(url, settings, auth) if port else None
            console = f"http://127.0.0.1:{port}/" if port else None
            where = _where(url, settings)

            def ready() -> None:
                lock.publish(console=console, data=where)
                print(banner(mode=mode, console=console, auth=auth, key=key, where=where,
                             embedded=not settings.database_url), file=sys.stderr, flush=True)

            run_until_stopped(build_services(url, settings, mode, args),
                              f"pgpulse is up (engine {mode}); Ctrl-C stops it", on_ready=ready)
    finally:
        lock.release()
        if shipper is not None:
            shipper.stop()
    return 0
