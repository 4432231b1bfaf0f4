"""``pgpulse proxy``: the proxy alone, served by gunicorn (gthread workers that read
request heads in their event loop, proxy/serving.py).

Migrations are not run here (the stack runs them once, in their own job); /ready
answers 503 until the schema is current.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pgpulse.config import SettingsError
from pgpulse.logs import setup_logging
from pgpulse.runtime import database
from pgpulse.settings import load_core

if TYPE_CHECKING:  # the proxy's modules load only when the proxy runs
    from proxy.settings import ProxySettings

log = logging.getLogger("pgpulse.proxy")


def register(sub) -> None:
    p = sub.add_parser("proxy", help="run the HTTP API (ingest, query, export) under gunicorn")
    p.add_argument("--bind", help="host:port (default PROXY_HOST:PORT)")
    p.add_argument("--workers", type=int, help="worker processes (default PROXY_WORKERS)")
    p.add_argument("--threads", type=int, help="threads per worker (default PROXY_THREADS)")
    p.set_defaults(func=run)


def _bind_host(bind: str) -> str | None:
    """The host part of a gunicorn bind address (None for a Unix socket)."""
    if bind.startswith("unix:"):
        return None
    if bind.startswith("["):  # [::1]:8085
        return bind[1:].partition("]")[0]
    if bind.count(":") == 1:
        return bind.rpartition(":")[0]
    return bind


def is_loopback(bind: str) -> bool:
    """Whether ``bind`` only listens on this machine (loopback or a Unix socket)."""
    host = _bind_host(bind)
    if host is None:
        return True
    if not host:
        return False  # ":8085" is every interface
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                   for a in addresses)


def check_open_bind(bind: str, settings: ProxySettings) -> None:
    """Refuse an open proxy (auth off) on an address other machines can reach, unless
    PGPULSE_AUTH_OFF_BEYOND_LOOPBACK says so: a log line is too easy to miss."""
    if settings.auth or settings.auth_off_beyond_loopback or is_loopback(bind):
        return
    raise SettingsError(
        f"PGPULSE_AUTH=off with the non-loopback address {bind}: anyone who reaches it "
        "could write and read without a key. Turn auth on, bind 127.0.0.1 (PROXY_HOST or "
        "--bind), or set PGPULSE_AUTH_OFF_BEYOND_LOOPBACK=on to allow it"
    )


def gunicorn_options(bind: str, workers: int, threads: int, settings: ProxySettings) -> dict:
    from proxy import serving

    return {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        # gthread, but request heads are read in the event loop: a slow client holds
        # no thread until its request is complete, and reads/writes in a thread time
        # out (proxy/serving.py).
        "worker_class": serving.worker_class(settings.header_timeout_s, settings.body_timeout_s),
        # Open connections per worker (slow ones cost a socket and a buffer, not a thread).
        "worker_connections": 1000,
        # The request line is bounded by the worker (serving.MAX_HEAD_BYTES, with a JSON
        # error): gunicorn's own cap (8 KiB at most) is below a long selector in a URL.
        "limit_request_line": 0,
        # Exports stream for long; a worker is only killed when it stops heartbeating.
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        # gunicorn's control socket has one path per user ($HOME/.gunicorn/gunicorn.ctl):
        # two proxies on one machine would take it from each other. Not used by pgpulse.
        "control_socket_disable": True,
    }


def run(args) -> int:
    from gunicorn.app.base import BaseApplication

    from pgpulse import config
    from proxy.settings import load_proxy

    environ = config.read_environment()
    core = load_core(environ)
    settings = load_proxy(environ)
    shipper = setup_logging("proxy", core.log_level, core.log_format, core.loki_url)
    bind = args.bind or f"{settings.host}:{settings.port}"
    check_open_bind(bind, settings)
    workers = args.workers or settings.workers
    threads = args.threads or settings.threads
    metrics_dir = settings.metrics_dir
    made_dir = None
    if metrics_dir is None and workers > 1:
        made_dir = tempfile.mkdtemp(prefix="pgpulse-metrics-")
        metrics_dir = made_dir
    if metrics_dir:
        # Clean start: files of an earlier run would add stale counts.
        path = Path(metrics_dir)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    if not settings.auth:
        log.warning("PGPULSE_AUTH=off: the API accepts requests without a key on %s", bind)
    try:
        with database(core) as url:
            app_config = {**environ, "DATABASE_URL": url}
            if metrics_dir:
                app_config["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            hooks = _LogHooks(core.log_level, core.log_format, core.loki_url)
            _serve(BaseApplication, app_config, metrics_dir,
                   {**gunicorn_options(bind, workers, threads, settings), **hooks.options()})
    finally:
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)
        if shipper is not None:
            shipper.stop()
    return 0


def _serve(base, app_config: dict, metrics_dir: str | None, options: dict) -> None:
    import os

    if metrics_dir:
        # prometheus_client picks its multiprocess storage from this variable when it
        # is first imported, which happens in the workers, after the fork.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    class ProxyApplication(base):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if metrics_dir:
                self.cfg.set("child_exit", _child_exit)

        def load(self):
            from proxy import create_app

            return create_app(app_config)

    ProxyApplication().run()


class _LogHooks:
    """Gunicorn hooks that keep every line JSON (gunicorn's own too) and give each
    worker its own Loki shipper: the shipper's thread does not survive the fork."""

    def __init__(self, level: str, fmt: str, loki_url: str | None) -> None:
        self.level, self.fmt, self.loki_url = level, fmt, loki_url
        self.shipper = None

    @staticmethod
    def _adopt_gunicorn_loggers() -> None:
        for name in ("gunicorn.error", "gunicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True

    def on_starting(self, server) -> None:
        self._adopt_gunicorn_loggers()

    def post_fork(self, server, worker) -> None:
        self.shipper = setup_logging("proxy", self.level, self.fmt, self.loki_url)
        self._adopt_gunicorn_loggers()

    def worker_exit(self, server, worker) -> None:
        if self.shipper is not None:
            self.shipper.stop()

    def options(self) -> dict:
        return {"on_starting": self.on_starting, "post_fork": self.post_fork,
                "worker_exit": self.worker_exit, "loglevel": self.level}


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _check_port_free(port: int) -> None:
    """A clear error when ``port`` is taken (werkzeug would print its own message and
    exit the whole process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise SettingsError(
                f"port {port} on 127.0.0.1 is taken by another program: stop it, or set PORT "
                f"to a free port (PORT=8086 make run)") from None


class ProxyService:
    """The proxy inside ``pgpulse up``: a threaded werkzeug server on 127.0.0.1."""

    name = "proxy"

    def __init__(self, url: str) -> None:
        self.url = url
        self.server = None
        self.app = None
        self.thread = None

    def start(self) -> None:
        import threading

        from werkzeug.serving import make_server

        from pgpulse import config
        from proxy import create_app
        from proxy.serving import JsonErrorRequestHandler
        from proxy.settings import load_proxy

        environ = config.read_environment()
        settings = load_proxy(environ)
        self.app = create_app({**environ, "DATABASE_URL": self.url})
        # Local use only: never listens beyond this machine, whatever PROXY_HOST says.
        _check_port_free(settings.port)
        self.server = make_server("127.0.0.1", settings.port, self.app, threaded=True,
                                  request_handler=JsonErrorRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="proxy", daemon=True)
        self.thread.start()
        log.info("proxy listening on http://127.0.0.1:%d", settings.port)
        if not settings.auth:
            log.warning("proxy running open (PGPULSE_AUTH=off) on 127.0.0.1:%d: no API key needed",
                        settings.port)

    def stop(self) -> None:
        from proxy import close_app

        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.app is not None:
            close_app(self.app)
