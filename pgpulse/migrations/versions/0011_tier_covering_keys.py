"""The portable rollup stores' primary keys carry the rolled-up columns.

A read of a tier fetches, per series, every bucket of a range: rows that the rollup
runs wrote bucket by bucket for all series, so each lies on a different heap page.
With the values in the key's index (``INCLUDE``), the read is an index-only scan of
consecutive index entries instead of one heap page per row (docs/performance.md).
The key's columns and name do not
change; the index grows by the five values per row.

Only the samples stores: a host store row holds 65 values, too wide to copy into an
index, and a host chart reads one host's rows, few next to the samples'. TimescaleDB's
continuous aggregates are left to TimescaleDB.

Revision ID: 0011_tier_covering_keys
Revises: 0010_tenants
Create Date: 2026-12-02
"""

from alembic import context, op

revision = "0011_tier_covering_keys"
down_revision = "0010_tenants"
branch_labels = None
depends_on = None

STORES = ("pgpulse_samples_5m_store", "pgpulse_samples_1h_store")


def _portable() -> bool:
    return context.config.attributes["engine"] == "portable"


def _key(store: str, include: str) -> None:
    op.execute(
        f"ALTER TABLE {store} DROP CONSTRAINT {store}_pkey, "
        f"ADD CONSTRAINT {store}_pkey PRIMARY KEY (series_id, bucket){include}"
    )


def upgrade() -> None:
    if _portable():
        for store in STORES:
            _key(store, " INCLUDE (count, sum, min, max, last)")


def downgrade() -> None:
    if _portable():
        for store in STORES:
            _key(store, "")
