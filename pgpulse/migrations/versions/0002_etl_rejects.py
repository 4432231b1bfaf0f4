"""ETL rejects: one open reject per document, its source, and an index for paging.

* ``etl_rejects.source_id``: the source identity of a rejected reading when it
  could be read (NULL otherwise), so rejects can be filtered like readings.
* A document has at most one *open* reject (``replayed_at IS NULL``): a run that
  repeats after a crash updates it instead of adding a second one.
* Open rejects are listed newest first and paged by (created_at, id).

The same in both engine modes: these are plain tables there too.

Revision ID: 0002_etl_rejects
Revises: 0001_initial
Create Date: 2026-11-22
"""

from alembic import context, op

revision = "0002_etl_rejects"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


def upgrade() -> None:
    op.execute("ALTER TABLE etl_rejects ADD COLUMN source_id text")
    # Close duplicate open rejects (keeping the newest) so the unique index can exist.
    op.execute(
        """
        UPDATE etl_rejects r SET replayed_at = now()
        WHERE replayed_at IS NULL
          AND EXISTS (SELECT 1 FROM etl_rejects o
                      WHERE o.mongo_id = r.mongo_id AND o.replayed_at IS NULL AND o.id > r.id)
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX etl_rejects_open_mongo_key ON etl_rejects (mongo_id) "
        "WHERE replayed_at IS NULL"
    )
    op.execute(
        "CREATE INDEX etl_rejects_open_created_idx ON etl_rejects (created_at, id) "
        "WHERE replayed_at IS NULL"
    )
    # Existing privileges cover the new column (table-level grants); restated so
    # the revision stands on its own.
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON etl_rejects TO pgpulse_writer")
    op.execute("GRANT SELECT ON etl_rejects TO pgpulse_reader")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS etl_rejects_open_created_idx")
    op.execute("DROP INDEX IF EXISTS etl_rejects_open_mongo_key")
    op.execute("ALTER TABLE etl_rejects DROP COLUMN IF EXISTS source_id")
