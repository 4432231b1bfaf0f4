"""TimescaleDB: the application may refresh the tiers; chunks that fit the retention.

* ``pgpulse_tiers`` owns the four continuous aggregates. TimescaleDB lets only an
  aggregate's owner run ``refresh_continuous_aggregate``, and the call cannot run
  inside a ``SECURITY DEFINER`` function (it commits between its steps), so
  ``pgpulse tiers refresh`` as the application's role could not back-fill. The
  writer group may ``SET ROLE pgpulse_tiers`` for the refresh (``pgpulse.tiers``
  resets it afterwards) without inheriting the aggregates' ownership: on PostgreSQL
  16 and later the grant is ``WITH INHERIT FALSE``, so the application cannot drop
  or alter them. The role can read the raw tables, which a refresh aggregates.
  TimescaleDB runs a policy job as the owner of its aggregate and refuses an owner
  that cannot log in, so the role has ``LOGIN`` but no password: nobody can log in
  as it where the server asks for a password.
* Chunk intervals follow each tier's retention (``pgpulse_configure``): at most a
  seventh of it, in whole hours, so retention drops a tier's data at most a seventh
  of its setting late. Raw tables keep 1-day chunks at the default retention (14
  days); the aggregates' materialised hypertables had TimescaleDB's default, ten
  times their source's (10 days), which a 4-day 5m retention never dropped. A new
  interval applies to chunks made after it.

Portable engine: nothing changes (its rollups are plain tables the writer already
maintains through ``SECURITY DEFINER`` functions, and its partitions are daily).

Revision ID: 0007_timescale_roles
Revises: 0006_protocols
Create Date: 2026-12-01
"""

from alembic import context, op

revision = "0007_timescale_roles"
down_revision = "0006_protocols"
branch_labels = None
depends_on = None

CAGGS = ("samples_5m", "system_metrics_5m", "samples_1h", "system_metrics_1h")
ROLE = "pgpulse_tiers"


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


# Same checks, policies and meta as revision 0003's; the chunk intervals are new.
TIMESCALE_CONFIGURE = """
    CREATE OR REPLACE FUNCTION pgpulse_configure(
        raw_keep interval, keep_5m interval, keep_1h interval,
        late interval, compress_after interval)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        rel text;
        mat regclass;
    BEGIN
        IF late + INTERVAL '15 minutes' >= raw_keep OR late + INTERVAL '3 hours' >= keep_5m THEN
            RAISE EXCEPTION 'late window (%) must be shorter than raw retention (%) by more than 15 minutes', late, raw_keep;
        END IF;
        FOREACH rel IN ARRAY ARRAY['samples', 'system_metrics'] LOOP
            PERFORM set_chunk_time_interval(rel::regclass, pgpulse_chunk_interval(raw_keep, INTERVAL '1 day'));
            PERFORM remove_retention_policy(rel, if_exists => true);
            PERFORM add_retention_policy(rel, drop_after => raw_keep);
            PERFORM remove_compression_policy(rel, if_exists => true);
            PERFORM add_compression_policy(rel, compress_after => compress_after);
        END LOOP;
        FOREACH rel IN ARRAY ARRAY['samples_5m', 'system_metrics_5m'] LOOP
            SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)::regclass
              INTO STRICT mat FROM timescaledb_information.continuous_aggregates
             WHERE view_schema = 'public' AND view_name = rel;
            PERFORM set_chunk_time_interval(mat, pgpulse_chunk_interval(keep_5m, INTERVAL '10 days'));
            PERFORM remove_continuous_aggregate_policy(rel, if_exists => true);
            PERFORM add_continuous_aggregate_policy(rel,
                start_offset => greatest(raw_keep - INTERVAL '1 day', late + INTERVAL '15 minutes'),
                end_offset => INTERVAL '5 minutes',
                schedule_interval => INTERVAL '1 minute');
            PERFORM remove_retention_policy(rel, if_exists => true);
            PERFORM add_retention_policy(rel, drop_after => keep_5m);
        END LOOP;
        FOREACH rel IN ARRAY ARRAY['samples_1h', 'system_metrics_1h'] LOOP
            SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)::regclass
              INTO STRICT mat FROM timescaledb_information.continuous_aggregates
             WHERE view_schema = 'public' AND view_name = rel;
            PERFORM set_chunk_time_interval(mat, pgpulse_chunk_interval(keep_1h, INTERVAL '10 days'));
            PERFORM remove_continuous_aggregate_policy(rel, if_exists => true);
            PERFORM add_continuous_aggregate_policy(rel,
                start_offset => greatest(keep_5m - INTERVAL '1 day', late + INTERVAL '3 hours'),
                end_offset => INTERVAL '1 hour',
                schedule_interval => INTERVAL '5 minutes');
            PERFORM remove_retention_policy(rel, if_exists => true);
            PERFORM add_retention_policy(rel, drop_after => keep_1h);
        END LOOP;
        INSERT INTO pgpulse_meta (key, value) VALUES
            ('raw_retention', raw_keep::text), ('retention_5m', keep_5m::text),
            ('retention_1h', keep_1h::text), ('late_window', late::text),
            ('compress_after', compress_after::text)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END $$
"""

# A seventh of the retention in whole hours (at least one), never more than the
# engine's usual interval for that table.
CHUNK_INTERVAL = """
    CREATE FUNCTION pgpulse_chunk_interval(keep interval, usual interval)
    RETURNS interval LANGUAGE sql IMMUTABLE AS $$
        SELECT least(usual, greatest(INTERVAL '1 hour',
               make_interval(hours => floor(extract(epoch FROM keep) / 7 / 3600)::integer)))
    $$
"""

CREATE_ROLE = f"""
    DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} LOGIN;
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $$
"""

# Who migrates must be able to SET ROLE to the new owner to hand the aggregates over
# (and, not being a superuser, to manage their policies afterwards); the writer group
# may SET ROLE to it without inheriting ownership where the server can say so.
GRANT_ROLE = f"""
    DO $$ BEGIN
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         AND NOT pg_has_role(current_user, '{ROLE}', 'MEMBER') THEN
        EXECUTE format('GRANT {ROLE} TO %I', current_user);
      END IF;
      IF current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE 'GRANT {ROLE} TO pgpulse_writer WITH INHERIT FALSE, SET TRUE';
      ELSE
        EXECUTE 'GRANT {ROLE} TO pgpulse_writer';
      END IF;
    END $$
"""


def upgrade() -> None:
    if engine() != "timescale":
        return
    op.execute(CREATE_ROLE)
    op.execute(GRANT_ROLE)
    # A refresh reads the raw tables and the 5m aggregates (its own).
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT ON samples, system_metrics TO {ROLE}")
    for cagg in CAGGS:
        op.execute(f"ALTER MATERIALIZED VIEW {cagg} OWNER TO {ROLE}")
    op.execute(CHUNK_INTERVAL)
    # The policies and intervals are remade from settings by `pgpulse migrate` right after.
    op.execute(TIMESCALE_CONFIGURE)


def downgrade() -> None:
    if engine() != "timescale":
        return
    previous = context.script.get_revision("0003_late_data").module
    op.execute(previous.TIMESCALE_CONFIGURE)
    op.execute("DROP FUNCTION IF EXISTS pgpulse_chunk_interval(interval, interval)")
    # Back to the owner of the raw tables (who migrated them).
    op.execute(
        """
        DO $$
        DECLARE owner name := (SELECT tableowner FROM pg_tables
                               WHERE schemaname = 'public' AND tablename = 'samples');
                v text;
        BEGIN
          FOREACH v IN ARRAY ARRAY['samples_5m', 'system_metrics_5m', 'samples_1h', 'system_metrics_1h'] LOOP
            EXECUTE format('ALTER MATERIALIZED VIEW %I OWNER TO %I', v, owner);
          END LOOP;
        END $$
        """
    )
    op.execute(f"REVOKE SELECT ON samples, system_metrics FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
    # Other databases of the cluster may still use the role: then it stays.
    op.execute(
        f"""
        DO $$ BEGIN
          DROP ROLE {ROLE};
        EXCEPTION WHEN dependent_objects_still_exist OR object_in_use THEN NULL;
        END $$
        """
    )
