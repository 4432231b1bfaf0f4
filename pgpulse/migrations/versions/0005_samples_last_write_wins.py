"""Samples: one value per (series, time), the last written (last write wins).

A retried ingest without an Idempotency-Key used to store its samples twice and
double ``count`` and ``sum`` in every answer. Now ``samples`` has a UNIQUE index on
(series_id, time) and the store's writer (``pgpulse.store.samples``) replaces the
value of a sample written again; as Prometheus and VictoriaMetrics do, the last
write wins. TimescaleDB's continuous aggregates cannot pick one row of several (no
DISTINCT ON, no window functions), so duplicates are resolved at write on both
engines: one rule, one writer.

* Existing duplicates are removed first, keeping one row per (series_id, time)
  with the value of the physically last row (highest ctid). That is the best guess
  of "last written" PostgreSQL keeps (a heap fills from the front, though a vacuumed
  page can take a newer row before an older one). TimescaleDB's compressed chunks
  keep no order of writing at all and have no ctid: when samples has a compressed
  chunk, the largest value of a duplicated key is kept, a deterministic choice.
* The unique index replaces revision 0001's non-unique ``samples_series_time_idx``
  (same columns, same order: the reads' plans do not change). Both engines allow
  it: it holds the partitioning column ``time``.
* portable: a late overwrite (an ``INSERT ... ON CONFLICT DO UPDATE`` of an old
  sample's value) must reach the tiers as a late insert does. Such a statement
  fires the INSERT statement trigger of revision 0003 with only the rows it
  inserted; the rows it updated are in the transition table of an UPDATE
  statement trigger, so ``samples`` gets one running the same logging function.
  The rows put back in place of duplicates are inserted again here, so the trigger
  logs their buckets below the 5m watermark and the next rollup re-derives them
  (``pgpulse tiers refresh`` re-derives everything in the raw retention as well).
* timescale: TimescaleDB's own invalidation log records updates and deletes, so the
  next policy run re-materialises the affected buckets.

Downgrade restores the non-unique index (and drops the UPDATE trigger); the rows
stay unique until something writes a duplicate again.

Revision ID: 0005_samples_last_write_wins
Revises: 0004_etl_typed_ids
Create Date: 2026-12-01
"""

from alembic import context, op

revision = "0005_samples_last_write_wins"
down_revision = "0004_etl_typed_ids"
branch_labels = None
depends_on = None


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


# Duplicates share their time, so they are always in the same partition or chunk,
# and comparing ctids within a key is meaningful. The kept value goes to a scratch
# table, every row of a duplicated key is deleted and the kept one inserted again:
# DELETE by ctid would not work on TimescaleDB's compressed chunks, where a row has
# no ctid of its own until decompressed.
KEEP = """
    CREATE TEMP TABLE pgpulse_samples_kept AS
    SELECT series_id, time, {choice} AS value
    FROM samples GROUP BY series_id, time HAVING count(*) > 1
"""
LAST_BY_CTID = "(array_agg(value ORDER BY ctid DESC))[1]"
KEEP_TIMESCALE = f"""
    DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM timescaledb_information.chunks
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'samples'
                     AND is_compressed) THEN
            {KEEP.format(choice="max(value)")};
        ELSE
            {KEEP.format(choice=LAST_BY_CTID)};
        END IF;
    END $$
"""
REPLACE = [
    """
    DELETE FROM samples s USING pgpulse_samples_kept k
    WHERE s.series_id = k.series_id AND s.time = k.time
    """,
    "INSERT INTO samples (time, series_id, value) SELECT time, series_id, value FROM pgpulse_samples_kept",
    "DROP TABLE pgpulse_samples_kept",
]


def upgrade() -> None:
    op.execute(KEEP_TIMESCALE if engine() == "timescale" else KEEP.format(choice=LAST_BY_CTID))
    for statement in REPLACE:
        op.execute(statement)
    op.execute("DROP INDEX samples_series_time_idx")
    op.execute("CREATE UNIQUE INDEX samples_series_time_key ON samples (series_id, time DESC)")
    if engine() == "portable":
        op.execute(
            "CREATE TRIGGER samples_log_late_updates AFTER UPDATE ON samples "
            "REFERENCING NEW TABLE AS pgpulse_new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes()"
        )


def downgrade() -> None:
    if engine() == "portable":
        op.execute("DROP TRIGGER IF EXISTS samples_log_late_updates ON samples")
    op.execute("DROP INDEX samples_series_time_key")
    op.execute("CREATE INDEX samples_series_time_idx ON samples (series_id, time DESC)")
