"""The application factory: ``create_app(config=None)`` builds the proxy's Flask app.

``config`` is None (settings come from the environment and ``.env``) or a mapping
used *instead of* the environment, with variable names as keys (``{"DATABASE_URL":
url, "PGPULSE_AUTH": "off"}``): text values are parsed like environment variables,
other values (ints, bools) are taken as they are. Keys that are not settings of the
core or the proxy go to ``app.config`` (e.g. ``TESTING``). Everything the app
needs from the mapping is loaded here, once (the ETL's settings too); the app keeps
no copy of the mapping, whose secrets would otherwise live as long as the app.

``create_app`` is a composition root: it builds the ETL service of the sync
endpoints from the ETL settings and a source, MongoDB at MONGO_URI unless the
caller passes ``etl_source`` (the test suite passes one backed by mongomock).

Each API area is a blueprint in its own module, listed in BLUEPRINTS. A module
there exports ``bp`` (a flask.Blueprint) and may export ``OPENAPI`` (the paths it
adds to /api/openapi.json; a test checks that every route is documented).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from etl.service import EtlService
from etl.settings import EtlSettings, load_etl
from etl.source import Source
from pgpulse import config as settings_config
from pgpulse.config import SettingsError
from pgpulse.settings import CoreSettings
from pgpulse.store.series import SeriesLimits
from pgpulse.tiers import Retention
from proxy import auth, errors, metrics
from proxy.db import make_pool
from proxy.ratelimit import RateLimits
from proxy.settings import ProxySettings
from proxy.state import EXTENSION, ProxyState

log = logging.getLogger("proxy")

# One module per API area, registered in this order. Adding an area is one line.
BLUEPRINTS: tuple[str, ...] = (
    "proxy.api.ops",
    "proxy.api.ingest",
    "proxy.api.influx",
    "proxy.api.remote_write",
    "proxy.api.otlp",
    "proxy.api.query",
    "proxy.api.prom_api",
    "proxy.api.remote_read",
    "proxy.api.hosts",
    "proxy.api.discovery",
    "proxy.api.export",
    "proxy.api.sync",
    "proxy.api.admin",
    "proxy.api.usage",
    "proxy.api.status",
    "proxy.api.openapi",
    "proxy.api.console",
)


def _settings_keys() -> set[str]:
    return {spec.env for cls in (CoreSettings, ProxySettings, EtlSettings)
            for _, spec in settings_config.specs(cls)}


def _etl(core: CoreSettings, environ: Mapping[str, Any], source: Source | None
         ) -> tuple[EtlService | None, str | None]:
    """The ETL service of the sync endpoints, or None and why the ETL is off. Unusable
    ETL settings are logged, not raised: the rest of the proxy serves regardless."""
    try:
        settings = load_etl(environ)
    except SettingsError as exc:
        log.error("the ETL is off, its settings are not usable: %s", exc)
        return None, f"the ETL settings are not usable: {exc}"
    if not settings.configured:
        return None, "the ETL is not configured: MONGO_URI is not set"
    limits = SeriesLimits.from_settings(core)
    if source is None:
        return EtlService.from_settings(core.database_url, settings, limits), None
    return EtlService(core.database_url, settings, source, limits), None


def create_app(config: Mapping[str, Any] | None = None, *, etl_source: Source | None = None) -> Flask:
    """Build the proxy app; opens its database pool (closed by ``close_app``).

    ``etl_source``: where the ETL reads documents from (default: MongoDB at MONGO_URI).
    """
    environ: Mapping[str, Any] = settings_config.read_environment() if config is None else dict(config)
    core: CoreSettings = settings_config.load_mapping(CoreSettings, environ)
    settings: ProxySettings = settings_config.load_mapping(ProxySettings, environ)
    if not core.database_url:
        raise SettingsError("DATABASE_URL is required by the proxy")

    app = Flask("proxy", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    if config is not None:
        known = _settings_keys()
        app.config.update({k: v for k, v in config.items() if k not in known and k.isupper()})

    etl, etl_off = _etl(core, environ, etl_source)
    pool = make_pool(core.database_url, settings)
    app.extensions[EXTENSION] = ProxyState(
        core=core,
        settings=settings,
        database_url=core.database_url,
        pool=pool,
        replica_pool=make_pool(core.database_read_url, settings, name="proxy-read")
        if core.database_read_url else None,
        retention=Retention.from_settings(core),
        ratelimit=RateLimits(settings),
        etl=etl,
        etl_off=etl_off,
    )
    errors.register(app)
    metrics.instrument(app)  # first, so that it times every request
    app.before_request(auth.reject_key_in_query_string)

    openapi_paths: dict[str, Any] = {}
    for module_name in BLUEPRINTS:
        module = importlib.import_module(module_name)
        app.register_blueprint(module.bp)
        openapi_paths.update(getattr(module, "OPENAPI", {}))
    app.extensions[EXTENSION].openapi_paths = openapi_paths
    return app


def close_app(app: Flask) -> None:
    """Release what ``create_app`` opened (the database pool, the ETL's client)."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.close()
