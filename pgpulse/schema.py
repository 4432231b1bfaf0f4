"""Running migrations and asking which schema version a database is at."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from pgpulse import engine as engine_mode
from pgpulse.db import connect, sqlalchemy_url
from pgpulse.settings import CoreSettings
from pgpulse.tiers import Retention

log = logging.getLogger(__name__)

# Shipped inside the package, so an installed wheel migrates as a checkout does.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(**attributes) -> Config:
    """An Alembic config pointing at pgpulse's migrations, whatever the working directory.

    Built in code rather than from alembic.ini, which an installed package does not
    have; the ini at the repository's root is only for running ``alembic`` by hand.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes.update(attributes)
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
    if not row[0]:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _run(url: str, requested_engine: str, action, *args) -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            cfg = alembic_config(connection=connection, engine_request=requested_engine)
            action(cfg, *args)
    finally:
        engine.dispose()


def upgrade(url: str, requested_engine: str = "auto", revision: str = "head") -> None:
    _run(url, requested_engine, command.upgrade, revision)


def downgrade(url: str, revision: str = "base") -> None:
    _run(url, "auto", command.downgrade, revision)


def offline_sql(engine: str, revision: str = "head") -> str:
    """The DDL of every revision up to ``revision`` for ``engine``, as one SQL script."""
    buffer = io.StringIO()
    cfg = alembic_config(engine_request=engine)
    cfg.output_buffer = buffer
    command.upgrade(cfg, revision, sql=True)
    return buffer.getvalue()


def configure(conn: psycopg.Connection, settings: CoreSettings) -> None:
    """Store retention and windows from settings; in timescale mode, (re)make the policies."""
    retention = Retention.from_settings(settings)
    conn.execute(
        "SELECT pgpulse_configure(%s, %s, %s, %s, %s)",
        (retention.raw, retention.m5, retention.h1, settings.late_window,
         timedelta(hours=settings.compress_after_hours)),
    )


def migrate(url: str, settings: CoreSettings) -> str:
    """Upgrade to head, then apply the settings' policies. Returns the engine mode."""
    upgrade(url, settings.engine)
    with connect(url) as conn:
        configure(conn, settings)
        mode = engine_mode.recorded(conn)
    log.info("schema at %s, engine %s", head_revision(), mode)
    return mode
