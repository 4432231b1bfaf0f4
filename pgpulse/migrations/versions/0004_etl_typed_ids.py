"""ETL: document keys that keep the BSON type of _id, and what each run read.

* ``reading_analytics.mongo_id`` and ``etl_rejects.mongo_id`` keep the type of the
  document's ``_id``: an ObjectId stays its 24 hex digits, any other value is its
  JSON text (Extended JSON for BSON types), so a string is stored with its quotes.
  Before, ``{_id: 7}`` and ``{_id: "7"}`` were both ``7`` and the second document
  overwrote the first. Existing rows whose ``_id`` is a string (told by the stored
  document, which holds the ``_id``) get the quoted form; the rest already had the
  new form. The mapping is one-to-one, so no unique index can be violated.
* ``etl_runs.read_from`` (hosts/database.collection the run read) and
  ``etl_runs.warning`` (e.g. the collection was missing or empty).

Downgrade turns string keys back into bare text: it fails on a unique index if two
documents now differ only in the type of their _id (the case this revision allows).

The same in both engine modes: these are plain tables there too.

Revision ID: 0004_etl_typed_ids
Revises: 0003_late_data
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004_etl_typed_ids"
down_revision = "0003_late_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # to_jsonb(text)::text is the JSON string of the text, escaped as the ETL's
    # encoder (orjson) escapes it: quotes, backslash and control characters only.
    op.execute(
        "UPDATE reading_analytics SET mongo_id = to_jsonb(mongo_id)::text "
        "WHERE jsonb_typeof(payload -> '_id') = 'string'"
    )
    op.execute(
        "UPDATE etl_rejects SET mongo_id = to_jsonb(mongo_id)::text "
        "WHERE jsonb_typeof(document -> '_id') = 'string'"
    )
    op.execute("ALTER TABLE etl_runs ADD COLUMN read_from text, ADD COLUMN warning text")
    # Table-level grants cover the new columns; restated so the revision stands alone.
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON etl_runs TO pgpulse_writer")
    op.execute("GRANT SELECT ON etl_runs TO pgpulse_reader")


def downgrade() -> None:
    op.execute("ALTER TABLE etl_runs DROP COLUMN IF EXISTS warning, DROP COLUMN IF EXISTS read_from")
    op.execute(
        "UPDATE etl_rejects SET mongo_id = mongo_id::jsonb #>> '{}' "
        "WHERE jsonb_typeof(document -> '_id') = 'string' AND left(mongo_id, 1) = '\"'"
    )
    op.execute(
        "UPDATE reading_analytics SET mongo_id = mongo_id::jsonb #>> '{}' "
        "WHERE jsonb_typeof(payload -> '_id') = 'string' AND left(mongo_id, 1) = '\"'"
    )
