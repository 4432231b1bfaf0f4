"""What the standard protocols bring besides values: staleness markers and metric metadata.

* ``stale_markers``: (series, time) where the series went stale. Prometheus sends a
  special NaN (``0x7ff0000000000002``) in remote_write when a series disappears from
  a scrape; stored in ``samples`` it would be a value that turns every sum and
  average into NaN, and rollups would carry it. Kept apart, it is what PromQL's
  lookback needs (a stale series ends at once) and the tiers never see it. No
  foreign key, like ``samples``: writes stay one COPY-like statement. Markers older
  than the raw retention are pruned by the scheduler on both engines
  (``pgpulse.store.staleness.prune``); the index on time serves that.
* ``metric_metadata``: one row per metric family name (Prometheus's type, help and
  unit, from remote_write metadata and OTLP), what ``/api/v1/metadata`` answers.
  A series' own ``type`` (gauge or counter) stays on ``series``: a histogram
  family's ``_bucket``/``_count``/``_sum`` series are counters there.

The same plain tables on both engines.

Revision ID: 0006_protocols
Revises: 0005_samples_last_write_wins
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006_protocols"
down_revision = "0005_samples_last_write_wins"
branch_labels = None
depends_on = None

# Prometheus's metric types (its metadata API and remote_write's MetricMetadata).
METADATA_TYPES = ("counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE stale_markers (
            series_id bigint NOT NULL,
            time timestamptz NOT NULL,
            PRIMARY KEY (series_id, time)
        )
        """
    )
    op.execute("CREATE INDEX stale_markers_time_idx ON stale_markers (time)")
    types = ", ".join(f"'{t}'" for t in METADATA_TYPES)
    op.execute(
        f"""
        CREATE TABLE metric_metadata (
            name text PRIMARY KEY,
            type text NOT NULL CHECK (type IN ({types})),
            help text NOT NULL DEFAULT '',
            unit text NOT NULL DEFAULT '',
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON stale_markers, metric_metadata TO pgpulse_writer")
    op.execute("GRANT SELECT ON stale_markers, metric_metadata TO pgpulse_reader")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS metric_metadata")
    op.execute("DROP TABLE IF EXISTS stale_markers")
