"""Monthly usage: samples stored per tenant and calendar month (UTC).

``usage_monthly`` holds one row per (tenant, month), written only by
``pgpulse.store.usage`` in the same transaction as the samples it counts, so the
count and the data commit or roll back together and a restart changes neither.
``month`` is the first day of the month in UTC. Tenants are text ids ('default'
for a single-user install); no foreign key yet, the tenants table comes later.

``pgpulse_writer`` reads and writes it; ``pgpulse_reader`` (Grafana) may read it.

Revision ID: 0012_usage
Revises: 0011_tier_covering_keys
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012_usage"
down_revision = "0011_tier_covering_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE usage_monthly (
            tenant text NOT NULL,
            month date NOT NULL CHECK (month = date_trunc('month', month)::date),
            samples bigint NOT NULL DEFAULT 0 CHECK (samples >= 0),
            PRIMARY KEY (tenant, month)
        )
        """
    )
    op.execute("GRANT SELECT, INSERT, UPDATE ON usage_monthly TO pgpulse_writer")
    op.execute("GRANT SELECT ON usage_monthly TO pgpulse_reader")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS usage_monthly")
