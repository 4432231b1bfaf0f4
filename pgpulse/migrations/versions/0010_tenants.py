"""Tenants: every key, series, snapshot, reading, ETL run and reject belongs to one.

* ``tenants``: a text slug id, a display name, and per-tenant overrides of the
  global settings (NULL: the global setting holds): series limits, retention and
  the monthly sample quota. The ``default`` tenant is made here; a single-user
  install never names another.
* ``tenant_id`` on ``api_keys``, ``series``, ``system_metrics``, ``metric_metadata``,
  ``reading_analytics``, ``etl_runs`` and ``etl_rejects``, defaulting to
  ``'default'``: existing rows land in the default tenant by this migration, with
  no step by hand. Samples and their tiers belong to a tenant through their series.
* ``audit_log.actor_tenant``: the tenant of the key that acted.
* Identity within a tenant: ``series`` is unique on (tenant, name, labels) and
  ``system_metrics`` on (tenant, host, time), ``metric_metadata`` on (tenant, name), so two tenants may send the same
  metric or host name and stay apart.

``pgpulse_writer`` may read and change ``tenants`` (the CLI and the admin API);
``pgpulse_reader`` may read it (Grafana joins series to tenants).

On Citus (revision 0009), ``tenants`` is a reference table like the tables whose
rows point at it: Citus allows a foreign key from a reference or distributed table
only to a reference table.

Revision ID: 0010_tenants
Revises: 0009_citus
Create Date: 2026-12-02
"""

from alembic import context, op
from sqlalchemy import text

revision = "0010_tenants"
down_revision = "0009_citus"
branch_labels = None
depends_on = None

OWNED = ("api_keys", "series", "system_metrics", "reading_analytics", "etl_runs", "etl_rejects",
         "metric_metadata")


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


def citus() -> bool:
    """True when this database has the citus extension (never in offline mode)."""
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"))
    return bool(found.scalar())


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
            name text NOT NULL CHECK (name <> ''),
            created_at timestamptz NOT NULL DEFAULT now(),
            max_series integer CHECK (max_series > 0),
            max_series_per_metric integer CHECK (max_series_per_metric > 0),
            raw_retention_days integer CHECK (raw_retention_days > 0),
            retention_5m_days integer CHECK (retention_5m_days > 0),
            retention_1h_days integer CHECK (retention_1h_days > 0),
            monthly_sample_quota bigint CHECK (monthly_sample_quota >= 0)
        )
        """
    )
    op.execute("INSERT INTO tenants (id, name) VALUES ('default', 'default')")
    if citus():
        op.execute("SELECT create_reference_table('tenants')")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO pgpulse_writer")
    op.execute("GRANT SELECT ON tenants TO pgpulse_reader")
    for table in OWNED:
        # A constant default: existing rows take it without a rewrite.
        op.execute(f"ALTER TABLE {table} ADD COLUMN tenant_id text NOT NULL DEFAULT 'default'")
    # On Citus only the reference tables get the foreign key: one from a plain local
    # table would turn it into a Citus-managed table, which then refuses to drop a
    # column of a table with an identity (the downgrade).
    local = () if citus() else ("api_keys", "etl_runs", "etl_rejects")
    for table in ("series", "reading_analytics", *local):
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_tenant_fkey "
                   f"FOREIGN KEY (tenant_id) REFERENCES tenants (id)")
    op.execute("ALTER TABLE series DROP CONSTRAINT series_name_labels_key")
    op.execute("ALTER TABLE series ADD CONSTRAINT series_tenant_name_labels_key "
               "UNIQUE (tenant_id, name, labels)")
    op.execute("ALTER TABLE metric_metadata DROP CONSTRAINT metric_metadata_pkey")
    op.execute("ALTER TABLE metric_metadata ADD PRIMARY KEY (tenant_id, name)")
    op.execute("ALTER TABLE system_metrics DROP CONSTRAINT system_metrics_host_time_key")
    if engine() == "timescale":
        # A hypertable's unique index must contain its time column, as this one does.
        op.execute("CREATE UNIQUE INDEX system_metrics_tenant_host_time_key "
                   "ON system_metrics (tenant_id, host, time)")
    else:
        op.execute("ALTER TABLE system_metrics ADD CONSTRAINT system_metrics_tenant_host_time_key "
                   "UNIQUE (tenant_id, host, time)")
    # Who acted: the acting key's tenant beside its id (NULL for the CLI).
    op.execute("ALTER TABLE audit_log ADD COLUMN actor_tenant text")
    op.execute("CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id)")
    op.execute("CREATE INDEX reading_analytics_tenant_idx ON reading_analytics (tenant_id, reading_time, id)")
    op.execute("CREATE INDEX etl_rejects_tenant_idx ON etl_rejects (tenant_id, created_at, id)")


def downgrade() -> None:
    op.execute("ALTER TABLE audit_log DROP COLUMN actor_tenant")
    op.execute("DROP INDEX IF EXISTS etl_rejects_tenant_idx")
    op.execute("DROP INDEX IF EXISTS reading_analytics_tenant_idx")
    op.execute("DROP INDEX IF EXISTS api_keys_tenant_idx")
    if engine() == "timescale":
        op.execute("DROP INDEX system_metrics_tenant_host_time_key")
    else:
        op.execute("ALTER TABLE system_metrics DROP CONSTRAINT system_metrics_tenant_host_time_key")
    op.execute("ALTER TABLE system_metrics ADD CONSTRAINT system_metrics_host_time_key UNIQUE (host, time)")
    op.execute("ALTER TABLE metric_metadata DROP CONSTRAINT metric_metadata_pkey")
    op.execute("ALTER TABLE metric_metadata ADD PRIMARY KEY (name)")
    op.execute("ALTER TABLE series DROP CONSTRAINT series_tenant_name_labels_key")
    op.execute("ALTER TABLE series ADD CONSTRAINT series_name_labels_key UNIQUE (name, labels)")
    for table in OWNED:
        op.execute(f"ALTER TABLE {table} DROP COLUMN tenant_id")
    op.execute("DROP TABLE tenants")
