"""Building the agent from settings, and running it as a part of ``pgpulse up``."""

from __future__ import annotations

from collector.agent import Agent
from collector.settings import CollectorSettings, load_collector
from collector.sinks import Sink
from collector.sinks.http import HttpSink
from collector.snapshot import Sampler
from collector.source import HostSource
from collector.spool import Spool
from pgpulse.config import SettingsError
from pgpulse.settings import CoreSettings


def source_of(settings: CollectorSettings) -> HostSource:
    return HostSource(settings.proc_path, settings.sys_path, settings.root_path)


def sampler_of(settings: CollectorSettings) -> Sampler:
    return Sampler(
        source_of(settings), top_n=settings.top_n, labels=settings.labels, interval=settings.interval
    )


def host_of(settings: CollectorSettings) -> str:
    return settings.hostname or source_of(settings).hostname()


def sink_of(settings: CollectorSettings, database_url: str | None) -> Sink:
    """The configured sink, checked (raises SettingsError naming what is wrong)."""
    if settings.sink == "http":
        sink: Sink = HttpSink(settings.http_url, settings.api_key)
    else:
        if not database_url:
            raise SettingsError("DATABASE_URL must be set when COLLECTOR_SINK=postgres")
        # Imported here: a host pushing over http never loads the database driver.
        from collector.sinks.postgres import PostgresSink

        sink = PostgresSink(database_url)
    sink.check()
    return sink


def build_agent(settings: CollectorSettings, core: CoreSettings, database_url: str | None) -> Agent:
    """An agent (not started) for this host, as the settings describe it."""
    sink = sink_of(settings, database_url)
    spool = Spool(settings.spool_path(core.data_dir), settings.spool_max_rows)
    return Agent(
        sampler_of(settings),
        spool,
        sink,
        host=host_of(settings),
        interval=settings.interval,
        batch_size=settings.batch_size,
        replay_rate=settings.replay_rate,
        retry_max_s=settings.retry_max_s,
        flush_timeout_s=settings.flush_timeout_s,
    )


class CollectorService:
    """The collector as a part of ``pgpulse up`` (the Service protocol of pgpulse.runtime)."""

    name = "collector"

    def __init__(self, database_url: str, core: CoreSettings, settings: CollectorSettings | None = None) -> None:
        # Settings are read now, so a bad value stops `up` before anything starts;
        # the agent is built in start(), once the proxy an http sink may point at
        # is listening.
        self.settings = settings or load_collector()
        self.core = core
        self.database_url = database_url
        self.agent: Agent | None = None

    def start(self) -> None:
        self.agent = build_agent(self.settings, self.core, self.database_url)
        self.agent.start()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
