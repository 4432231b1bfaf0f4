"""``pgpulse up``: everything that is not an external server, in one foreground
process: the database (embedded when DATABASE_URL is unset), migrations, the
scheduler, the proxy and the collector. Ctrl-C or SIGTERM stops it all cleanly,
newest part first, each flushing what it buffers."""

from __future__ import annotations

import logging
import signal
import threading

from pgpulse.logs import setup_logging
from pgpulse.runtime import Service, database
from pgpulse.settings import CoreSettings, load_core

log = logging.getLogger("pgpulse.up")


def register(sub) -> None:
    p = sub.add_parser("up", help="run pgpulse in the foreground (database, scheduler, proxy, collector)")
    p.add_argument("--no-proxy", action="store_true", help="do not run the proxy")
    p.add_argument("--no-collector", action="store_true", help="do not run the collector")
    p.set_defaults(func=run)


class SchedulerService:
    name = "scheduler"

    def __init__(self, url: str, settings: CoreSettings, mode: str) -> None:
        from pgpulse import scheduler as jobs

        self.scheduler = jobs.build(url, settings, mode)

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.shutdown(wait=True)


def build_services(url: str, settings: CoreSettings, mode: str, args) -> list[Service]:
    """The parts ``up`` runs, in start order."""
    services: list[Service] = [SchedulerService(url, settings, mode)]
    from proxy.etl.schedule import add_job  # the ETL's scheduled run, when MONGO_URI is set

    add_job(services[0].scheduler, url)
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
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started: list[Service] = []
    try:
        with database(settings) as url:
            if not settings.database_url:
                log.info("no DATABASE_URL: using the embedded PostgreSQL in %s", settings.data_dir / "pgdata")
            mode = schema.migrate(url, settings)
            for service in build_services(url, settings, mode, args):
                service.start()
                started.append(service)
                log.info("%s started", service.name)
            log.info("pgpulse is up (engine %s); Ctrl-C stops it", mode)
            stop.wait()
            for service in reversed(started):
                service.stop()
                log.info("%s stopped", service.name)
            started.clear()
    finally:
        for service in reversed(started):  # an error on the way up: stop what did start
            service.stop()
        if shipper is not None:
            shipper.stop()
    return 0
