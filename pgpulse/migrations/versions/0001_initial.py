"""Initial schema: raw tables, 5m/1h tiers, catalogue, ETL, keys, roles.

Both engine modes create the same relation names and columns for readers
(system_metrics, system_metrics_5m, system_metrics_1h, series, samples, samples_5m,
samples_1h, reading_analytics) and the same maintenance functions
(pgpulse_configure, pgpulse_maintain, pgpulse_refresh_tiers), so that run-time
code calls one API whatever the mode.

* timescale: hypertables, continuous aggregates (1h built on 5m), policies set by
  pgpulse_configure().
* portable: raw tables range-partitioned by day (with a default partition so no
  insert ever fails), rollup stores maintained from a watermark by
  pgpulse_refresh_tiers(), exposed through views that add the not-yet-rolled-up
  part on the fly, like TimescaleDB's real-time aggregation does.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-22
"""

from alembic import context, op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# Headline numbers of a collector snapshot that get tiers: (column, JSON path).
# A frozen copy: pgpulse.tiers.HOST_FIELDS must match it (a test checks), and a
# later change of fields is a new revision.
HOST_FIELDS = [
    ("cpu_percent", "{cpu,percent}"),
    ("cpu_iowait", "{cpu,iowait}"),
    ("load1", "{load,load1}"),
    ("load5", "{load,load5}"),
    ("load15", "{load,load15}"),
    ("mem_percent", "{memory,percent}"),
    ("swap_percent", "{swap,percent}"),
    ("rootfs_percent", "{filesystems,/,percent}"),
    ("disk_read_bps", "{disk,read_bytes_per_s}"),
    ("disk_write_bps", "{disk,write_bytes_per_s}"),
    ("net_rx_bps", "{network,rx_bytes_per_s}"),
    ("net_tx_bps", "{network,tx_bytes_per_s}"),
    ("procs", "{processes,count}"),
]

READER_RELATIONS = [
    "system_metrics",
    "system_metrics_5m",
    "system_metrics_1h",
    "series",
    "samples",
    "samples_5m",
    "samples_1h",
    "reading_analytics",
    "etl_runs",
    "etl_rejects",
    "pgpulse_meta",
]

EPOCH = "'1970-01-01 00:00:00+00'::timestamptz"


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


def host_value(path: str) -> str:
    # Only JSON numbers count: a string or object where a number belongs becomes
    # NULL instead of breaking every later rollup with a cast error.
    return (
        f"CASE WHEN jsonb_typeof(data #> '{path}') = 'number' "
        f"THEN (data #>> '{path}')::double precision END"
    )


def host_store_columns() -> str:
    """The tier columns of every headline field: f_count, f_sum, f_min, f_max, f_last."""
    return ", ".join(
        f"{c}_{agg}" for c, _ in HOST_FIELDS for agg in ("count", "sum", "min", "max", "last")
    )


def host_5m_aggregates(last: str) -> str:
    """The five aggregates of every headline field over raw snapshots, one line a field.

    ``last`` is the engine's "value at the newest time" with ``{}`` for the value.
    """
    lines = []
    for c, path in HOST_FIELDS:
        v = host_value(path)
        lines.append(
            f"count({v}) AS {c}_count, sum({v}) AS {c}_sum, min({v}) AS {c}_min, "
            f"max({v}) AS {c}_max, {last.format(v)} AS {c}_last"
        )
    return ",\n".join(lines)


def host_1h_aggregates(last: str) -> str:
    """The five aggregates of every headline field over 5m buckets, one line a field."""
    return ",\n".join(
        f"sum({c}_count)::bigint AS {c}_count, sum({c}_sum) AS {c}_sum, min({c}_min) AS {c}_min, "
        f"max({c}_max) AS {c}_max, {last.format(c + '_last')} AS {c}_last"
        for c, _ in HOST_FIELDS
    )


# -- shared by both modes ----------------------------------------------------------


def create_roles() -> None:
    # Roles belong to the whole cluster, so several databases (and concurrent test
    # runs) may try to create them: existing ones are fine.
    for role in ("pgpulse_reader", "pgpulse_writer"):
        op.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN;
              END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$
            """
        )


def create_common_tables() -> None:
    op.execute(
        """
        CREATE TABLE pgpulse_meta (
            key text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(f"INSERT INTO pgpulse_meta (key, value) VALUES ('engine', '{engine()}')")
    op.execute(
        """
        CREATE TABLE series (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            labels jsonb NOT NULL DEFAULT '{}'::jsonb,
            type text NOT NULL DEFAULT 'gauge' CHECK (type IN ('gauge', 'counter')),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT series_name_labels_key UNIQUE (name, labels),
            CONSTRAINT series_labels_object CHECK (jsonb_typeof(labels) = 'object')
        )
        """
    )
    op.execute("CREATE INDEX series_labels_idx ON series USING gin (labels)")
    op.execute(
        """
        CREATE TABLE reading_analytics (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            mongo_id text NOT NULL UNIQUE,
            reading_time timestamptz NOT NULL,
            source_id text,
            synced_at timestamptz NOT NULL DEFAULT now(),
            run_id uuid,
            payload jsonb NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX reading_analytics_time_idx ON reading_analytics (reading_time, id)")
    op.execute(
        "CREATE INDEX reading_analytics_source_idx ON reading_analytics (source_id, reading_time, id)"
    )
    op.execute(
        """
        CREATE TABLE etl_runs (
            id uuid PRIMARY KEY,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            status text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed')),
            trigger text NOT NULL DEFAULT 'manual',
            claimed integer NOT NULL DEFAULT 0,
            loaded integer NOT NULL DEFAULT 0,
            rejected integer NOT NULL DEFAULT 0,
            error text
        )
        """
    )
    op.execute("CREATE INDEX etl_runs_started_idx ON etl_runs (started_at DESC)")
    op.execute(
        """
        CREATE TABLE etl_rejects (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id uuid REFERENCES etl_runs (id) ON DELETE SET NULL,
            mongo_id text NOT NULL,
            reason text NOT NULL,
            document jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            replayed_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX etl_rejects_mongo_idx ON etl_rejects (mongo_id)")
    op.execute(
        """
        CREATE TABLE api_keys (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            prefix text NOT NULL,
            key_hash text NOT NULL UNIQUE,
            scopes text[] NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at timestamptz,
            CONSTRAINT api_keys_scopes_known
                CHECK (scopes <@ ARRAY['ingest', 'query', 'admin']::text[])
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ingest_idempotency (
            key text PRIMARY KEY,
            request_hash text NOT NULL,
            status integer NOT NULL,
            response jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ingest_idempotency_created_idx ON ingest_idempotency (created_at)")


def grant_roles() -> None:
    op.execute("GRANT USAGE ON SCHEMA public TO pgpulse_reader, pgpulse_writer")
    # The reader (Grafana) sees telemetry and bookkeeping, never key hashes or
    # idempotency records.
    op.execute(f"GRANT SELECT ON {', '.join(READER_RELATIONS)} TO pgpulse_reader")
    if engine() == "portable":
        # The tier views call pgpulse_watermark(), which runs as the caller.
        op.execute("GRANT SELECT ON pgpulse_watermarks TO pgpulse_reader")
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO pgpulse_writer"
    )
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO pgpulse_writer")
    for fn in ("pgpulse_configure", "pgpulse_maintain", "pgpulse_refresh_tiers"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO pgpulse_writer")


# -- timescale ---------------------------------------------------------------------


def timescale_upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(
        """
        CREATE TABLE system_metrics (
            time timestamptz NOT NULL,
            host text NOT NULL,
            data jsonb NOT NULL,
            CONSTRAINT system_metrics_host_time_key UNIQUE (host, time)
        )
        """
    )
    op.execute("SELECT create_hypertable('system_metrics', 'time', chunk_time_interval => INTERVAL '1 day')")
    op.execute(
        """
        CREATE TABLE samples (
            time timestamptz NOT NULL,
            series_id bigint NOT NULL,
            value double precision NOT NULL
        )
        """
    )
    op.execute("SELECT create_hypertable('samples', 'time', chunk_time_interval => INTERVAL '1 day')")
    op.execute("CREATE INDEX samples_series_time_idx ON samples (series_id, time DESC)")
    create_common_tables()

    op.execute(
        """
        CREATE MATERIALIZED VIEW samples_5m
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket,
               series_id,
               count(value) AS count,
               sum(value) AS sum,
               min(value) AS min,
               max(value) AS max,
               last(value, time) AS last
        FROM samples
        GROUP BY 1, 2
        WITH NO DATA
        """
    )
    op.execute(
        """
        CREATE MATERIALIZED VIEW samples_1h
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket,
               series_id,
               sum(count)::bigint AS count,
               sum(sum) AS sum,
               min(min) AS min,
               max(max) AS max,
               last(last, bucket) AS last
        FROM samples_5m
        GROUP BY 1, 2
        WITH NO DATA
        """
    )
    cols_5m = host_5m_aggregates("last({}, time)")
    op.execute(
        f"""
        CREATE MATERIALIZED VIEW system_metrics_5m
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket, host, count(*) AS snapshots,
        {cols_5m}
        FROM system_metrics
        GROUP BY 1, 2
        WITH NO DATA
        """
    )
    cols_1h = host_1h_aggregates("last({}, bucket)")
    op.execute(
        f"""
        CREATE MATERIALIZED VIEW system_metrics_1h
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, host,
               sum(snapshots)::bigint AS snapshots,
        {cols_1h}
        FROM system_metrics_5m
        GROUP BY 1, 2
        WITH NO DATA
        """
    )
    op.execute(
        """
        ALTER TABLE samples SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'series_id',
            timescaledb.compress_orderby = 'time DESC')
        """
    )
    op.execute(
        """
        ALTER TABLE system_metrics SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'host',
            timescaledb.compress_orderby = 'time DESC')
        """
    )
    # Policies are (re)made from settings by pgpulse_configure(), called by
    # `pgpulse migrate` after every upgrade. The refresh windows start inside the
    # raw retention (settings enforce late window < raw retention), so a refresh
    # never re-aggregates a range whose raw chunks were dropped: that would empty
    # the rollups of that range.
    op.execute(
        """
        CREATE FUNCTION pgpulse_configure(
            raw_keep interval, keep_5m interval, keep_1h interval,
            late interval, compress_after interval)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            rel text;
        BEGIN
            -- The refresh windows below reach back late + 15 min (5m) and late + 3 h
            -- (1h); they must stay inside the retention of what they read.
            IF late + INTERVAL '15 minutes' >= raw_keep OR late + INTERVAL '3 hours' >= keep_5m THEN
                RAISE EXCEPTION 'late window (%) must be shorter than raw retention (%) by more than 15 minutes', late, raw_keep;
            END IF;
            FOREACH rel IN ARRAY ARRAY['samples', 'system_metrics'] LOOP
                PERFORM remove_retention_policy(rel, if_exists => true);
                PERFORM add_retention_policy(rel, drop_after => raw_keep);
                PERFORM remove_compression_policy(rel, if_exists => true);
                PERFORM add_compression_policy(rel, compress_after => compress_after);
            END LOOP;
            FOREACH rel IN ARRAY ARRAY['samples_5m', 'system_metrics_5m'] LOOP
                PERFORM remove_continuous_aggregate_policy(rel, if_exists => true);
                PERFORM add_continuous_aggregate_policy(rel,
                    start_offset => late + INTERVAL '15 minutes',
                    end_offset => INTERVAL '5 minutes',
                    schedule_interval => INTERVAL '1 minute');
                PERFORM remove_retention_policy(rel, if_exists => true);
                PERFORM add_retention_policy(rel, drop_after => keep_5m);
            END LOOP;
            FOREACH rel IN ARRAY ARRAY['samples_1h', 'system_metrics_1h'] LOOP
                PERFORM remove_continuous_aggregate_policy(rel, if_exists => true);
                PERFORM add_continuous_aggregate_policy(rel,
                    start_offset => late + INTERVAL '3 hours',
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
    )
    # TimescaleDB's own job scheduler runs retention and refresh policies; these
    # two exist so run-time code has one API in both modes.
    op.execute(
        """
        CREATE FUNCTION pgpulse_maintain(raw_keep interval, keep_5m interval,
            keep_1h interval, ahead interval, at timestamptz DEFAULT now())
        RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT 0 $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
            keep_5m interval, at timestamptz DEFAULT now())
        RETURNS TABLE (relation text, buckets bigint)
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT NULL::text, NULL::bigint WHERE false $$
        """
    )


def timescale_downgrade() -> None:
    for view in ("system_metrics_1h", "system_metrics_5m", "samples_1h", "samples_5m"):
        op.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_configure(interval, interval, interval, interval, interval)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_maintain(interval, interval, interval, interval, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_refresh_tiers(interval, interval, interval, timestamptz)")
    drop_common_tables()
    op.execute("DROP TABLE IF EXISTS samples")
    op.execute("DROP TABLE IF EXISTS system_metrics")


# -- portable ----------------------------------------------------------------------


def refresh_step(relation: str, select: str, columns: str = "") -> str:
    """One step of pgpulse_refresh_tiers(): re-aggregate the buckets of ``relation``
    from its bound (``lo_5m``/``lo_1h``) up to its target, count them, move its watermark.

    A 5m tier aggregates raw rows (``select`` names its FROM); a 1h tier aggregates
    its family's 5m store, whole hours only. ``columns`` is the store's column list
    where the select's column order needs naming.
    """
    family, tier = relation.rsplit("_", 1)
    if tier == "5m":
        bounds = f"""\
            lo_5m := greatest(pgpulse_watermark('{relation}') - late, raw_floor);
            lo_5m := least(lo_5m, target_5m);"""
        source, key = "", "time"
    else:
        bounds = f"""\
            lo_1h := least(pgpulse_watermark('{relation}'), date_bin(INTERVAL '1 hour', lo_5m, {EPOCH}));
            lo_1h := least(greatest(lo_1h, floor_5m), target_1h);"""
        source, key = f"            FROM pgpulse_{family}_5m_store\n", "bucket"
    lo, target = f"lo_{tier}", f"target_{tier}"
    return f"""\
{bounds}
            DELETE FROM pgpulse_{relation}_store WHERE bucket >= {lo} AND bucket < {target};
            INSERT INTO pgpulse_{relation}_store{columns}
            {select}
{source}            WHERE {key} >= {lo} AND {key} < {target}
            GROUP BY 1, 2;
            GET DIAGNOSTICS n = ROW_COUNT;
            relation := '{relation}'; buckets := n; RETURN NEXT;
            INSERT INTO pgpulse_watermarks (relation, watermark) VALUES ('{relation}', {target})
            ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE SET watermark = EXCLUDED.watermark, refreshed_at = now();"""


def portable_upgrade() -> None:
    op.execute(
        """
        CREATE TABLE system_metrics (
            time timestamptz NOT NULL,
            host text NOT NULL,
            data jsonb NOT NULL,
            CONSTRAINT system_metrics_host_time_key UNIQUE (host, time)
        ) PARTITION BY RANGE (time)
        """
    )
    op.execute("CREATE TABLE system_metrics_default PARTITION OF system_metrics DEFAULT")
    op.execute(
        """
        CREATE TABLE samples (
            time timestamptz NOT NULL,
            series_id bigint NOT NULL,
            value double precision NOT NULL
        ) PARTITION BY RANGE (time)
        """
    )
    op.execute("CREATE TABLE samples_default PARTITION OF samples DEFAULT")
    op.execute("CREATE INDEX samples_series_time_idx ON samples (series_id, time DESC)")
    create_common_tables()

    op.execute(
        """
        CREATE TABLE pgpulse_watermarks (
            relation text PRIMARY KEY,
            watermark timestamptz NOT NULL,
            refreshed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION pgpulse_watermark(rel text) RETURNS timestamptz
        LANGUAGE sql STABLE AS $$
            SELECT coalesce((SELECT watermark FROM pgpulse_watermarks WHERE relation = rel),
                            '-infinity'::timestamptz)
        $$
        """
    )
    host_cols = ",\n".join(
        f"{c}_count bigint NOT NULL, {c}_sum double precision, {c}_min double precision, "
        f"{c}_max double precision, {c}_last double precision"
        for c, _ in HOST_FIELDS
    )
    for tier in ("5m", "1h"):
        op.execute(
            f"""
            CREATE TABLE pgpulse_samples_{tier}_store (
                bucket timestamptz NOT NULL,
                series_id bigint NOT NULL,
                count bigint NOT NULL,
                sum double precision,
                min double precision,
                max double precision,
                last double precision,
                PRIMARY KEY (series_id, bucket)
            )
            """
        )
        op.execute(f"CREATE INDEX pgpulse_samples_{tier}_store_bucket_idx ON pgpulse_samples_{tier}_store (bucket)")
        op.execute(
            f"""
            CREATE TABLE pgpulse_system_metrics_{tier}_store (
                bucket timestamptz NOT NULL,
                host text NOT NULL,
                snapshots bigint NOT NULL,
                {host_cols},
                PRIMARY KEY (host, bucket)
            )
            """
        )
        op.execute(
            f"CREATE INDEX pgpulse_system_metrics_{tier}_store_bucket_idx "
            f"ON pgpulse_system_metrics_{tier}_store (bucket)"
        )

    # What aggregates raw rows into a 5m bucket, and 5m rows into a 1h bucket: the
    # same expressions feed the rollup jobs and the live part of the views.
    samples_5m_select = f"""
        SELECT date_bin(INTERVAL '5 minutes', time, {EPOCH}) AS bucket, series_id,
               count(value) AS count, sum(value) AS sum, min(value) AS min,
               max(value) AS max, (array_agg(value ORDER BY time DESC))[1] AS last
        FROM samples
    """
    samples_1h_select = f"""
        SELECT date_bin(INTERVAL '1 hour', bucket, {EPOCH}) AS bucket, series_id,
               sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, (array_agg(last ORDER BY bucket DESC))[1] AS last
    """
    host_5m_cols = host_5m_aggregates("(array_agg({} ORDER BY time DESC))[1]")
    host_5m_select = f"""
        SELECT date_bin(INTERVAL '5 minutes', time, {EPOCH}) AS bucket, host,
               count(*) AS snapshots,
        {host_5m_cols}
        FROM system_metrics
    """
    host_1h_cols = host_1h_aggregates("(array_agg({} ORDER BY bucket DESC))[1]")
    host_1h_select = f"""
        SELECT date_bin(INTERVAL '1 hour', bucket, {EPOCH}) AS bucket, host,
               sum(snapshots)::bigint AS snapshots,
        {host_1h_cols}
    """
    # Readers' relations: the rolled-up store below the watermark, plus the part
    # above it aggregated live (what TimescaleDB's real-time aggregates do).
    op.execute(
        f"""
        CREATE VIEW samples_5m AS
        SELECT * FROM pgpulse_samples_5m_store WHERE bucket < pgpulse_watermark('samples_5m')
        UNION ALL
        {samples_5m_select}
        WHERE time >= pgpulse_watermark('samples_5m')
        GROUP BY 1, 2
        """
    )
    op.execute(
        f"""
        CREATE VIEW samples_1h AS
        SELECT * FROM pgpulse_samples_1h_store WHERE bucket < pgpulse_watermark('samples_1h')
        UNION ALL
        {samples_1h_select}
        FROM samples_5m
        WHERE bucket >= pgpulse_watermark('samples_1h')
        GROUP BY 1, 2
        """
    )
    op.execute(
        f"""
        CREATE VIEW system_metrics_5m AS
        SELECT * FROM pgpulse_system_metrics_5m_store
        WHERE bucket < pgpulse_watermark('system_metrics_5m')
        UNION ALL
        {host_5m_select}
        WHERE time >= pgpulse_watermark('system_metrics_5m')
        GROUP BY 1, 2
        """
    )
    op.execute(
        f"""
        CREATE VIEW system_metrics_1h AS
        SELECT * FROM pgpulse_system_metrics_1h_store
        WHERE bucket < pgpulse_watermark('system_metrics_1h')
        UNION ALL
        {host_1h_select}
        FROM system_metrics_5m
        WHERE bucket >= pgpulse_watermark('system_metrics_1h')
        GROUP BY 1, 2
        """
    )

    op.execute(
        """
        CREATE FUNCTION pgpulse_configure(
            raw_keep interval, keep_5m interval, keep_1h interval,
            late interval, compress_after interval)
        RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            -- The refresh windows below reach back late + 15 min (5m) and late + 3 h
            -- (1h); they must stay inside the retention of what they read.
            IF late + INTERVAL '15 minutes' >= raw_keep OR late + INTERVAL '3 hours' >= keep_5m THEN
                RAISE EXCEPTION 'late window (%) must be shorter than raw retention (%) by more than 15 minutes', late, raw_keep;
            END IF;
            INSERT INTO pgpulse_meta (key, value) VALUES
                ('raw_retention', raw_keep::text), ('retention_5m', keep_5m::text),
                ('retention_1h', keep_1h::text), ('late_window', late::text),
                ('compress_after', compress_after::text)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
        END $$
        """
    )
    # Daily partitions named <table>_pYYYYMMDD (UTC days). A partition is created
    # detached, fed the rows the default partition caught for its day, then
    # attached: inserts never fail for want of a partition, and nothing is lost.
    op.execute(
        """
        CREATE FUNCTION pgpulse_ensure_partitions(parent text, from_ts timestamptz, to_ts timestamptz)
        RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            day timestamptz := date_trunc('day', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
            part text;
            made integer := 0;
        BEGIN
            IF parent NOT IN ('samples', 'system_metrics') THEN
                RAISE EXCEPTION 'not a partitioned pgpulse table: %', parent;
            END IF;
            WHILE day < to_ts LOOP
                part := parent || '_p' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD');
                IF to_regclass(part) IS NULL THEN
                    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                                   part, parent);
                    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE time >= $1 AND time < $2 RETURNING *) '
                                   'INSERT INTO %I SELECT * FROM moved', parent || '_default', part)
                        USING day, day + INTERVAL '1 day';
                    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                                   parent, part, day, day + INTERVAL '1 day');
                    made := made + 1;
                END IF;
                day := day + INTERVAL '1 day';
            END LOOP;
            RETURN made;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION pgpulse_maintain(raw_keep interval, keep_5m interval,
            keep_1h interval, ahead interval, at timestamptz DEFAULT now())
        RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            parent text;
            part record;
            dropped integer := 0;
            horizon timestamptz := at - raw_keep;
        BEGIN
            -- One maintainer at a time across processes.
            PERFORM pg_advisory_xact_lock(hashtext('pgpulse_maintain'));
            FOREACH parent IN ARRAY ARRAY['samples', 'system_metrics'] LOOP
                PERFORM pgpulse_ensure_partitions(parent, greatest(at - INTERVAL '1 day', horizon), at + ahead);
                FOR part IN
                    SELECT c.relname FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = parent::regclass
                      AND c.relname ~ ('^' || parent || '_p[0-9]{8}$')
                      AND (to_date(right(c.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC')
                          + INTERVAL '1 day' <= horizon
                LOOP
                    EXECUTE format('DROP TABLE %I', part.relname);
                    dropped := dropped + 1;
                END LOOP;
                EXECUTE format('DELETE FROM %I WHERE time < $1', parent || '_default') USING horizon;
            END LOOP;
            DELETE FROM pgpulse_samples_5m_store WHERE bucket < at - keep_5m;
            DELETE FROM pgpulse_system_metrics_5m_store WHERE bucket < at - keep_5m;
            DELETE FROM pgpulse_samples_1h_store WHERE bucket < at - keep_1h;
            DELETE FROM pgpulse_system_metrics_1h_store WHERE bucket < at - keep_1h;
            RETURN dropped;
        END $$
        """
    )
    # Incremental, idempotent rollups. Each run re-aggregates from (watermark - late)
    # up to the last complete bucket: delete those buckets, aggregate them again,
    # move the watermark. Never below the raw (or 5m) retention horizon, rounded up
    # to a whole bucket, so a long pause cannot wipe rollups of dropped raw data.
    # Four steps in this order (raw -> 5m, then 5m -> 1h, per table family), each
    # written once by refresh_step().
    host_columns = f" (bucket, host, snapshots, {host_store_columns()})"
    op.execute(
        f"""
        CREATE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
            keep_5m interval, at timestamptz DEFAULT now())
        RETURNS TABLE (relation text, buckets bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            raw_floor timestamptz := date_bin(INTERVAL '1 hour', at - raw_keep, {EPOCH}) + INTERVAL '1 hour';
            floor_5m timestamptz := date_bin(INTERVAL '1 hour', at - keep_5m, {EPOCH}) + INTERVAL '1 hour';
            target_5m timestamptz := date_bin(INTERVAL '5 minutes', at, {EPOCH});
            lo_5m timestamptz;
            lo_1h timestamptz;
            target_1h timestamptz;
            n bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('pgpulse_refresh_tiers'));

            -- samples: raw -> 5m
{refresh_step("samples_5m", samples_5m_select)}

            -- samples: 5m -> 1h (from the store only: whole hours below the 5m watermark)
            target_1h := date_bin(INTERVAL '1 hour', target_5m, {EPOCH});
{refresh_step("samples_1h", samples_1h_select)}

            -- system_metrics: raw -> 5m
{refresh_step("system_metrics_5m", host_5m_select, host_columns)}

            -- system_metrics: 5m -> 1h
{refresh_step("system_metrics_1h", host_1h_select, host_columns)}
        END $$
        """
    )
    # Partitions for the days around now, so the first inserts land in place.
    op.execute("SELECT pgpulse_ensure_partitions('samples', now() - INTERVAL '1 day', now() + INTERVAL '7 days')")
    op.execute(
        "SELECT pgpulse_ensure_partitions('system_metrics', now() - INTERVAL '1 day', now() + INTERVAL '7 days')"
    )


def portable_downgrade() -> None:
    for view in ("system_metrics_1h", "system_metrics_5m", "samples_1h", "samples_5m"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_refresh_tiers(interval, interval, interval, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_maintain(interval, interval, interval, interval, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_ensure_partitions(text, timestamptz, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_configure(interval, interval, interval, interval, interval)")
    for tier in ("5m", "1h"):
        op.execute(f"DROP TABLE IF EXISTS pgpulse_samples_{tier}_store")
        op.execute(f"DROP TABLE IF EXISTS pgpulse_system_metrics_{tier}_store")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_watermark(text)")
    op.execute("DROP TABLE IF EXISTS pgpulse_watermarks")
    drop_common_tables()
    op.execute("DROP TABLE IF EXISTS samples")
    op.execute("DROP TABLE IF EXISTS system_metrics")


def drop_common_tables() -> None:
    for table in (
        "ingest_idempotency",
        "api_keys",
        "etl_rejects",
        "etl_runs",
        "reading_analytics",
        "series",
        "pgpulse_meta",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")


def drop_roles() -> None:
    # Other databases of the cluster may still use the roles: then they stay.
    op.execute(
        """
        DO $$
        DECLARE r text;
        BEGIN
          FOREACH r IN ARRAY ARRAY['pgpulse_reader', 'pgpulse_writer'] LOOP
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
              EXECUTE format('REVOKE ALL ON SCHEMA public FROM %I', r);
              BEGIN
                EXECUTE format('DROP ROLE %I', r);
              EXCEPTION WHEN dependent_objects_still_exist OR object_in_use THEN NULL;
              END;
            END IF;
          END LOOP;
        END $$
        """
    )


def upgrade() -> None:
    create_roles()
    if engine() == "timescale":
        timescale_upgrade()
    else:
        portable_upgrade()
    grant_roles()


def downgrade() -> None:
    if engine() == "timescale":
        timescale_downgrade()
    else:
        portable_downgrade()
    drop_roles()
