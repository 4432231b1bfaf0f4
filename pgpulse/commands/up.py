"""``pgpulse up``: everything that is not an external server, in one foreground
process: the database (embedded when DATABASE_URL is unset), migrations, the
scheduler, the proxy and the collector. Ctrl-C or SIGTERM stops it all cleanly,
newest part first, each flushing what it buffers."""

from __future__ import annotations

import logging

from pgpulse.logs import setup_logging
from pgpulse.runtime import Service, database, run_until_stopped
from pgpulse.settings import CoreSettings, load_core

log = logging.getLogger("pgpulse.up")


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


def run(args) -> int:
    from pgpulse import schema  # heavy imports wait until `up` really runs

    settings = load_core()
    shipper = setup_logging("pgpulse", settings.log_level, settings.log_format, settings.loki_url)
    try:
        with database(settings) as url:
            if not settings.database_url:
                log.info("no DATABASE_URL: using the embedded PostgreSQL in %s", settings.data_dir / "pgdata")
            mode = schema.migrate(url, settings)
            run_until_stopped(build_services(url, settings, mode, args),
                              f"pgpulse is up (engine {mode}); Ctrl-C stops it")
    finally:
        if shipper is not None:
            shipper.stop()
    return 0
