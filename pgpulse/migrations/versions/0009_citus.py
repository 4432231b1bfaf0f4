"""Citus: the portable engine's tables distributed across worker nodes.

Runs only where the ``citus`` extension is installed in the database (``CREATE
EXTENSION citus`` on the coordinator, workers added, before ``pgpulse migrate``);
on plain PostgreSQL and on TimescaleDB it does nothing, so single-node installs are
unchanged. The layout (docs/scaling.md):

* distributed by ``series_id`` and colocated (a series' raw rows, rollups and
  staleness markers sit in the same shard, so the rollup's ``INSERT ... SELECT`` and
  the reads' joins run on the shards in parallel): ``samples`` (every partition,
  the default one included), ``pgpulse_samples_5m_store``,
  ``pgpulse_samples_1h_store``, ``stale_markers``;
* distributed by ``host`` and colocated: ``system_metrics``,
  ``pgpulse_system_metrics_5m_store``, ``pgpulse_system_metrics_1h_store``;
* reference tables (a copy on every node): ``series`` and ``reading_analytics``
  (their unique keys, on name and labels and on the Mongo id, hold no column a
  distribution could use), ``pgpulse_watermarks`` (read by every tier view on the
  shards), ``metric_metadata``;
* the bookkeeping (meta, keys, idempotency, ETL runs and rejects, audit, the
  invalidation log) stays on the coordinator.

What Citus refuses, changed here in the database's own objects (read back from the
catalogue, so whatever an earlier revision made them is kept but for the change):

* the tier views call ``pgpulse_watermark()``, a function that reads a table, which
  a shard cannot run; the views read the watermark with a scalar subquery instead,
  which Citus evaluates once on the coordinator;
* ``ON CONFLICT ... DO UPDATE SET refreshed_at = now()`` (functions in ``DO UPDATE``
  must be immutable on distributed and reference tables): ``EXCLUDED.refreshed_at``,
  the column's default, the same instant;
* attaching a new day partition leaves the rows moved out of the default partition
  in a local copy on the coordinator: ``pgpulse_ensure_partitions`` truncates it;
* Citus runs shard queries as the caller, so the reader role needs SELECT on the
  rollup stores the views read;
* Citus distributes no table with triggers. The statement triggers that log late
  writes (revisions 0003 and 0005) are dropped on the two raw tables: the rollups
  re-aggregate the late window on every run as revision 0001's did, and a write
  older than the late window reaches the tiers with ``pgpulse tiers refresh``
  (a back-fill; docs/scaling.md says so).

Idempotent (a table already distributed or a view already rewritten is left alone)
and reversible: downgrade undistributes every table back to the coordinator and
restores the views, functions, grants and triggers.

Revision ID: 0009_citus
Revises: 0008_audit
Create Date: 2026-12-02
"""

from alembic import context, op
from sqlalchemy import text

revision = "0009_citus"
down_revision = "0008_audit"
branch_labels = None
depends_on = None

# (table, distribution column, colocated with): the first of each group opens it.
DISTRIBUTED = [
    ("samples", "series_id", "none"),
    ("pgpulse_samples_5m_store", "series_id", "samples"),
    ("pgpulse_samples_1h_store", "series_id", "samples"),
    ("stale_markers", "series_id", "samples"),
    ("system_metrics", "host", "none"),
    ("pgpulse_system_metrics_5m_store", "host", "system_metrics"),
    ("pgpulse_system_metrics_1h_store", "host", "system_metrics"),
]
REFERENCE = ["series", "reading_analytics", "pgpulse_watermarks", "metric_metadata"]
# The identity column of the reference tables that have one.
IDENTITY = {"series": "id", "reading_analytics": "id"}
VIEWS = ["samples_5m", "samples_1h", "system_metrics_5m", "system_metrics_1h"]
STORES = [
    "pgpulse_samples_5m_store",
    "pgpulse_samples_1h_store",
    "pgpulse_system_metrics_5m_store",
    "pgpulse_system_metrics_1h_store",
]
# (table, trigger, event): the late-write log's triggers (revisions 0003 and 0005).
TRIGGERS = [
    ("samples", "samples_log_late_writes", "INSERT"),
    ("samples", "samples_log_late_updates", "UPDATE"),
    ("system_metrics", "system_metrics_log_late_writes", "INSERT"),
]

# How pg_get_viewdef prints revision 0001's call, and the scalar subquery it becomes
# (and back, on downgrade).
CALL = r"pgpulse_watermark\('([a-z0-9_]+)'::text\)"
SUBQUERY = (
    "COALESCE((SELECT pgpulse_watermarks.watermark FROM pgpulse_watermarks "
    "WHERE pgpulse_watermarks.relation = '\\1'::text), '-infinity'::timestamp with time zone)"
)
# pg_get_viewdef's own rendering of SUBQUERY: what downgrade matches.
PRINTED_SUBQUERY = (
    r"COALESCE\(\( SELECT pgpulse_watermarks\.watermark\s+FROM pgpulse_watermarks\s+"
    r"WHERE \(pgpulse_watermarks\.relation = '([a-z0-9_]+)'::text\)\), "
    r"'-infinity'::timestamp with time zone\)"
)
ATTACH = "parent, part, day, day + INTERVAL '1 day');"
TRUNCATE_LOCAL = (
    ATTACH + "\n                    -- Citus keeps the attached table's rows in a local copy.\n"
    "                    PERFORM truncate_local_data_after_distributing_table(format('%I', part)::regclass);"
)


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


def citus() -> bool:
    """True when this database has the citus extension (never in offline mode: the
    rendered schema is that of a single node)."""
    if context.is_offline_mode() or engine() != "portable":
        return False
    bind = op.get_bind()
    return bool(bind.execute(text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")).scalar())


def _scalar(sql: str, **params):
    return op.get_bind().execute(text(sql), params).scalar()


def _citus_table(table: str) -> bool:
    return bool(_scalar("SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass(:t))", t=table))


def _execute(statement: str) -> None:
    # Straight to psycopg: the catalogue's text holds format() patterns (%I, %L) that
    # a layer with bind parameters would take for placeholders.
    op.get_bind().connection.driver_connection.execute(statement)


def _rewrite_views(pattern: str, replacement: str) -> None:
    for view in VIEWS:
        definition = _scalar("SELECT pg_get_viewdef(to_regclass(:v))", v=view)
        new = _scalar("SELECT regexp_replace(:d, :p, :r, 'g')", d=definition, p=pattern, r=replacement)
        if new != definition:
            _execute(f"CREATE OR REPLACE VIEW {view} AS {new}")


def _rewrite_function(signature: str, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in a function's body; a body already changed (``new``
    there, where ``new`` extends ``old``) is left alone."""
    definition = _scalar("SELECT pg_get_functiondef(to_regprocedure(:f))", f=signature)
    if old in definition and not (old in new and new in definition):
        _execute(definition.replace(old, new))


REFRESH = "pgpulse_refresh_tiers(interval, interval, interval, timestamptz)"
ENSURE = "pgpulse_ensure_partitions(text, timestamptz, timestamptz)"


def _lock() -> None:
    # Taken first: an autovacuum ANALYZE that starts on a table between two steps of
    # distributing it can deadlock with them.
    tables = [t for t, _, _ in DISTRIBUTED] + REFERENCE
    op.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")


def upgrade() -> None:
    if not citus():
        return
    _lock()
    op.execute(f"GRANT SELECT ON {', '.join(STORES)} TO pgpulse_reader")
    _rewrite_views(CALL, SUBQUERY)
    _rewrite_function(REFRESH, "refreshed_at = now()", "refreshed_at = EXCLUDED.refreshed_at")
    _rewrite_function(ENSURE, ATTACH, TRUNCATE_LOCAL)
    for table, trigger, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
    for table in REFERENCE:
        if not _citus_table(table):
            op.execute(f"SELECT create_reference_table('{table}')")
    for table, column, colocate in DISTRIBUTED:
        if not _citus_table(table):
            op.execute(f"SELECT create_distributed_table('{table}', '{column}', colocate_with => '{colocate}')")
    # The rows the default partitions held are on the shards now, and a local copy of
    # them on the coordinator would only be read again by an undistribute.
    for table, _, colocate in DISTRIBUTED:
        if colocate == "none":
            op.execute(f"SELECT truncate_local_data_after_distributing_table('{table}')")


def downgrade() -> None:
    if not citus():
        return
    _lock()
    # Functions and views first: Citus propagates their DDL to the workers, which it
    # refuses after the parallel work of undistributing in the same transaction.
    _rewrite_function(ENSURE, TRUNCATE_LOCAL, ATTACH)
    _rewrite_function(REFRESH, "refreshed_at = EXCLUDED.refreshed_at", "refreshed_at = now()")
    _rewrite_views(PRINTED_SUBQUERY, r"pgpulse_watermark('\1'::text)")
    # Colocated tables first: a group's first table goes back last.
    for table, _, _ in reversed(DISTRIBUTED):
        if _citus_table(table):
            op.execute(f"SELECT undistribute_table('{table}', cascade_via_foreign_keys => false)")
    for table in REFERENCE:
        if _citus_table(table):
            identity = IDENTITY.get(table)
            if identity is None:
                op.execute(f"SELECT undistribute_table('{table}')")
                continue
            # undistribute_table refuses an identity column, and Citus refuses to drop
            # the identity of a distributed table: dropped on the coordinator's table
            # alone, then remade, continuing after the highest id.
            op.execute("SET LOCAL citus.enable_ddl_propagation = off")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {identity} DROP IDENTITY")
            op.execute("SET LOCAL citus.enable_ddl_propagation = on")
            op.execute(f"SELECT undistribute_table('{table}')")
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {identity} ADD GENERATED ALWAYS AS IDENTITY")
            op.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{identity}'), "
                f"coalesce(max({identity}), 0) + 1, false) FROM {table}"
            )
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_{identity}_seq TO pgpulse_writer")
    for table, trigger, event in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        op.execute(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table} "
            "REFERENCING NEW TABLE AS pgpulse_new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes()"
        )
    op.execute(f"REVOKE SELECT ON {', '.join(STORES)} FROM pgpulse_reader")
