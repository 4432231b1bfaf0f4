"""The application factory: ``create_app(config=None)`` builds the proxy's Flask app.

``config`` is None (settings come from the environment and ``.env``) or a mapping
used *instead of* the environment, with variable names as keys (``{"DATABASE_URL":
url, "PGPULSE_AUTH": "off"}``): text values are parsed like environment variables,
other values (ints, bools) are taken as they are. Keys that are not settings of the
core or the proxy go to ``app.config`` (e.g. ``TESTING``). Other parts of the proxy
load their own settings from the same mapping: ``state().environ``.

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

from pgpulse import config as settings_config
from pgpulse.config import SettingsError
from pgpulse.settings import CoreSettings
from pgpulse.tiers import Retention
from proxy import auth, errors, metrics
from proxy.db import make_pool
from proxy.settings import ProxySettings
from proxy.state import EXTENSION, ProxyState

log = logging.getLogger("proxy")

# One module per API area, registered in this order. Adding an area is one line.
BLUEPRINTS: tuple[str, ...] = (
    "proxy.api.ops",
    "proxy.api.ingest",
    "proxy.api.query",
    "proxy.api.hosts",
    "proxy.api.discovery",
    "proxy.api.export",
    "proxy.api.sync",
    "proxy.api.openapi",
)


def _settings_keys() -> set[str]:
    return {spec.env for cls in (CoreSettings, ProxySettings) for _, spec in settings_config.specs(cls)}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the proxy app; opens its database pool (closed by ``close_app``)."""
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

    pool = make_pool(core.database_url, settings)
    app.extensions[EXTENSION] = ProxyState(
        core=core,
        settings=settings,
        database_url=core.database_url,
        pool=pool,
        retention=Retention.from_settings(core),
        environ=environ,
    )
    errors.register(app)
    metrics.instrument(app)  # first, so that it times every request
    app.before_request(auth.reject_key_in_query_string)

    openapi_paths: dict[str, Any] = {}
    for module_name in BLUEPRINTS:
        module = importlib.import_module(module_name)
        app.register_blueprint(module.bp)
        openapi_paths.update(getattr(module, "OPENAPI", {}))
    app.extensions[EXTENSION].extras["openapi_paths"] = openapi_paths
    return app


def close_app(app: Flask) -> None:
    """Release what ``create_app`` opened (the database pool)."""
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.close()
