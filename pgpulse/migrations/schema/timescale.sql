BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001_initial

DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_reader') THEN
                CREATE ROLE pgpulse_reader NOLOGIN;
              END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$;

DO $$ BEGIN
              IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_writer') THEN
                CREATE ROLE pgpulse_writer NOLOGIN;
              END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END $$;

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE system_metrics (
            time timestamptz NOT NULL,
            host text NOT NULL,
            data jsonb NOT NULL,
            CONSTRAINT system_metrics_host_time_key UNIQUE (host, time)
        );

SELECT create_hypertable('system_metrics', 'time', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE samples (
            time timestamptz NOT NULL,
            series_id bigint NOT NULL,
            value double precision NOT NULL
        );

SELECT create_hypertable('samples', 'time', chunk_time_interval => INTERVAL '1 day');

CREATE INDEX samples_series_time_idx ON samples (series_id, time DESC);

CREATE TABLE pgpulse_meta (
            key text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

INSERT INTO pgpulse_meta (key, value) VALUES ('engine', 'timescale');

CREATE TABLE series (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            labels jsonb NOT NULL DEFAULT '{}'::jsonb,
            type text NOT NULL DEFAULT 'gauge' CHECK (type IN ('gauge', 'counter')),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT series_name_labels_key UNIQUE (name, labels),
            CONSTRAINT series_labels_object CHECK (jsonb_typeof(labels) = 'object')
        );

CREATE INDEX series_labels_idx ON series USING gin (labels);

CREATE TABLE reading_analytics (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            mongo_id text NOT NULL UNIQUE,
            reading_time timestamptz NOT NULL,
            source_id text,
            synced_at timestamptz NOT NULL DEFAULT now(),
            run_id uuid,
            payload jsonb NOT NULL
        );

CREATE INDEX reading_analytics_time_idx ON reading_analytics (reading_time, id);

CREATE INDEX reading_analytics_source_idx ON reading_analytics (source_id, reading_time, id);

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
        );

CREATE INDEX etl_runs_started_idx ON etl_runs (started_at DESC);

CREATE TABLE etl_rejects (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id uuid REFERENCES etl_runs (id) ON DELETE SET NULL,
            mongo_id text NOT NULL,
            reason text NOT NULL,
            document jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            replayed_at timestamptz
        );

CREATE INDEX etl_rejects_mongo_idx ON etl_rejects (mongo_id);

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
        );

CREATE TABLE ingest_idempotency (
            key text PRIMARY KEY,
            request_hash text NOT NULL,
            status integer NOT NULL,
            response jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

CREATE INDEX ingest_idempotency_created_idx ON ingest_idempotency (created_at);

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
        WITH NO DATA;

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
        WITH NO DATA;

CREATE MATERIALIZED VIEW system_metrics_5m
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket, host, count(*) AS snapshots,
        count(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_max, last(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END, time) AS cpu_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_max, last(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END, time) AS cpu_iowait_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_min, max(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_max, last(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END, time) AS load1_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_min, max(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_max, last(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END, time) AS load5_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_min, max(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_max, last(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END, time) AS load15_last,
count(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_min, max(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_max, last(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END, time) AS mem_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_min, max(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_max, last(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END, time) AS swap_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_min, max(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_max, last(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END, time) AS rootfs_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_max, last(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END, time) AS disk_read_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_max, last(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END, time) AS disk_write_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_max, last(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END, time) AS net_rx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_max, last(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END, time) AS net_tx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_count, sum(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_sum, min(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_min, max(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_max, last(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END, time) AS procs_last
        FROM system_metrics
        GROUP BY 1, 2
        WITH NO DATA;

CREATE MATERIALIZED VIEW system_metrics_1h
        WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
        SELECT time_bucket(INTERVAL '1 hour', bucket) AS bucket, host,
               sum(snapshots)::bigint AS snapshots,
        sum(cpu_percent_count)::bigint AS cpu_percent_count, sum(cpu_percent_sum) AS cpu_percent_sum, min(cpu_percent_min) AS cpu_percent_min, max(cpu_percent_max) AS cpu_percent_max, last(cpu_percent_last, bucket) AS cpu_percent_last,
sum(cpu_iowait_count)::bigint AS cpu_iowait_count, sum(cpu_iowait_sum) AS cpu_iowait_sum, min(cpu_iowait_min) AS cpu_iowait_min, max(cpu_iowait_max) AS cpu_iowait_max, last(cpu_iowait_last, bucket) AS cpu_iowait_last,
sum(load1_count)::bigint AS load1_count, sum(load1_sum) AS load1_sum, min(load1_min) AS load1_min, max(load1_max) AS load1_max, last(load1_last, bucket) AS load1_last,
sum(load5_count)::bigint AS load5_count, sum(load5_sum) AS load5_sum, min(load5_min) AS load5_min, max(load5_max) AS load5_max, last(load5_last, bucket) AS load5_last,
sum(load15_count)::bigint AS load15_count, sum(load15_sum) AS load15_sum, min(load15_min) AS load15_min, max(load15_max) AS load15_max, last(load15_last, bucket) AS load15_last,
sum(mem_percent_count)::bigint AS mem_percent_count, sum(mem_percent_sum) AS mem_percent_sum, min(mem_percent_min) AS mem_percent_min, max(mem_percent_max) AS mem_percent_max, last(mem_percent_last, bucket) AS mem_percent_last,
sum(swap_percent_count)::bigint AS swap_percent_count, sum(swap_percent_sum) AS swap_percent_sum, min(swap_percent_min) AS swap_percent_min, max(swap_percent_max) AS swap_percent_max, last(swap_percent_last, bucket) AS swap_percent_last,
sum(rootfs_percent_count)::bigint AS rootfs_percent_count, sum(rootfs_percent_sum) AS rootfs_percent_sum, min(rootfs_percent_min) AS rootfs_percent_min, max(rootfs_percent_max) AS rootfs_percent_max, last(rootfs_percent_last, bucket) AS rootfs_percent_last,
sum(disk_read_bps_count)::bigint AS disk_read_bps_count, sum(disk_read_bps_sum) AS disk_read_bps_sum, min(disk_read_bps_min) AS disk_read_bps_min, max(disk_read_bps_max) AS disk_read_bps_max, last(disk_read_bps_last, bucket) AS disk_read_bps_last,
sum(disk_write_bps_count)::bigint AS disk_write_bps_count, sum(disk_write_bps_sum) AS disk_write_bps_sum, min(disk_write_bps_min) AS disk_write_bps_min, max(disk_write_bps_max) AS disk_write_bps_max, last(disk_write_bps_last, bucket) AS disk_write_bps_last,
sum(net_rx_bps_count)::bigint AS net_rx_bps_count, sum(net_rx_bps_sum) AS net_rx_bps_sum, min(net_rx_bps_min) AS net_rx_bps_min, max(net_rx_bps_max) AS net_rx_bps_max, last(net_rx_bps_last, bucket) AS net_rx_bps_last,
sum(net_tx_bps_count)::bigint AS net_tx_bps_count, sum(net_tx_bps_sum) AS net_tx_bps_sum, min(net_tx_bps_min) AS net_tx_bps_min, max(net_tx_bps_max) AS net_tx_bps_max, last(net_tx_bps_last, bucket) AS net_tx_bps_last,
sum(procs_count)::bigint AS procs_count, sum(procs_sum) AS procs_sum, min(procs_min) AS procs_min, max(procs_max) AS procs_max, last(procs_last, bucket) AS procs_last
        FROM system_metrics_5m
        GROUP BY 1, 2
        WITH NO DATA;

ALTER TABLE samples SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'series_id',
            timescaledb.compress_orderby = 'time DESC');

ALTER TABLE system_metrics SET (timescaledb.compress,
            timescaledb.compress_segmentby = 'host',
            timescaledb.compress_orderby = 'time DESC');

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
        END $$;

CREATE FUNCTION pgpulse_maintain(raw_keep interval, keep_5m interval,
            keep_1h interval, ahead interval, at timestamptz DEFAULT now())
        RETURNS integer LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT 0 $$;

CREATE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
            keep_5m interval, at timestamptz DEFAULT now())
        RETURNS TABLE (relation text, buckets bigint)
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT NULL::text, NULL::bigint WHERE false $$;

GRANT USAGE ON SCHEMA public TO pgpulse_reader, pgpulse_writer;

GRANT SELECT ON system_metrics, system_metrics_5m, system_metrics_1h, series, samples, samples_5m, samples_1h, reading_analytics, etl_runs, etl_rejects, pgpulse_meta TO pgpulse_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO pgpulse_writer;

GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO pgpulse_writer;

REVOKE ALL ON FUNCTION pgpulse_configure FROM PUBLIC;

GRANT EXECUTE ON FUNCTION pgpulse_configure TO pgpulse_writer;

REVOKE ALL ON FUNCTION pgpulse_maintain FROM PUBLIC;

GRANT EXECUTE ON FUNCTION pgpulse_maintain TO pgpulse_writer;

REVOKE ALL ON FUNCTION pgpulse_refresh_tiers FROM PUBLIC;

GRANT EXECUTE ON FUNCTION pgpulse_refresh_tiers TO pgpulse_writer;

INSERT INTO alembic_version (version_num) VALUES ('0001_initial') RETURNING alembic_version.version_num;

-- Running upgrade 0001_initial -> 0002_etl_rejects

ALTER TABLE etl_rejects ADD COLUMN source_id text;

UPDATE etl_rejects r SET replayed_at = now()
        WHERE replayed_at IS NULL
          AND EXISTS (SELECT 1 FROM etl_rejects o
                      WHERE o.mongo_id = r.mongo_id AND o.replayed_at IS NULL AND o.id > r.id);

CREATE UNIQUE INDEX etl_rejects_open_mongo_key ON etl_rejects (mongo_id) WHERE replayed_at IS NULL;

CREATE INDEX etl_rejects_open_created_idx ON etl_rejects (created_at, id) WHERE replayed_at IS NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON etl_rejects TO pgpulse_writer;

GRANT SELECT ON etl_rejects TO pgpulse_reader;

UPDATE alembic_version SET version_num='0002_etl_rejects' WHERE alembic_version.version_num = '0001_initial';

-- Running upgrade 0002_etl_rejects -> 0003_late_data

CREATE OR REPLACE FUNCTION pgpulse_configure(
        raw_keep interval, keep_5m interval, keep_1h interval,
        late interval, compress_after interval)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        rel text;
    BEGIN
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
                start_offset => greatest(raw_keep - INTERVAL '1 day', late + INTERVAL '15 minutes'),
                end_offset => INTERVAL '5 minutes',
                schedule_interval => INTERVAL '1 minute');
            PERFORM remove_retention_policy(rel, if_exists => true);
            PERFORM add_retention_policy(rel, drop_after => keep_5m);
        END LOOP;
        FOREACH rel IN ARRAY ARRAY['samples_1h', 'system_metrics_1h'] LOOP
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
    END $$;

UPDATE alembic_version SET version_num='0003_late_data' WHERE alembic_version.version_num = '0002_etl_rejects';

-- Running upgrade 0003_late_data -> 0004_etl_typed_ids

UPDATE reading_analytics SET mongo_id = to_jsonb(mongo_id)::text WHERE jsonb_typeof(payload -> '_id') = 'string';

UPDATE etl_rejects SET mongo_id = to_jsonb(mongo_id)::text WHERE jsonb_typeof(document -> '_id') = 'string';

ALTER TABLE etl_runs ADD COLUMN read_from text, ADD COLUMN warning text;

GRANT SELECT, INSERT, UPDATE, DELETE ON etl_runs TO pgpulse_writer;

GRANT SELECT ON etl_runs TO pgpulse_reader;

UPDATE alembic_version SET version_num='0004_etl_typed_ids' WHERE alembic_version.version_num = '0003_late_data';

-- Running upgrade 0004_etl_typed_ids -> 0005_samples_last_write_wins

DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM timescaledb_information.chunks
                   WHERE hypertable_schema = current_schema() AND hypertable_name = 'samples'
                     AND is_compressed) THEN
            
    CREATE TEMP TABLE pgpulse_samples_kept AS
    SELECT series_id, time, max(value) AS value
    FROM samples GROUP BY series_id, time HAVING count(*) > 1
;
        ELSE
            
    CREATE TEMP TABLE pgpulse_samples_kept AS
    SELECT series_id, time, (array_agg(value ORDER BY ctid DESC))[1] AS value
    FROM samples GROUP BY series_id, time HAVING count(*) > 1
;
        END IF;
    END $$;

DELETE FROM samples s USING pgpulse_samples_kept k
    WHERE s.series_id = k.series_id AND s.time = k.time;

INSERT INTO samples (time, series_id, value) SELECT time, series_id, value FROM pgpulse_samples_kept;

DROP TABLE pgpulse_samples_kept;

DROP INDEX samples_series_time_idx;

CREATE UNIQUE INDEX samples_series_time_key ON samples (series_id, time DESC);

UPDATE alembic_version SET version_num='0005_samples_last_write_wins' WHERE alembic_version.version_num = '0004_etl_typed_ids';

-- Running upgrade 0005_samples_last_write_wins -> 0006_protocols

CREATE TABLE stale_markers (
            series_id bigint NOT NULL,
            time timestamptz NOT NULL,
            PRIMARY KEY (series_id, time)
        );

CREATE INDEX stale_markers_time_idx ON stale_markers (time);

CREATE TABLE metric_metadata (
            name text PRIMARY KEY,
            type text NOT NULL CHECK (type IN ('counter', 'gauge', 'histogram', 'gaugehistogram', 'summary', 'info', 'stateset', 'unknown')),
            help text NOT NULL DEFAULT '',
            unit text NOT NULL DEFAULT '',
            updated_at timestamptz NOT NULL DEFAULT now()
        );

GRANT SELECT, INSERT, UPDATE, DELETE ON stale_markers, metric_metadata TO pgpulse_writer;

GRANT SELECT ON stale_markers, metric_metadata TO pgpulse_reader;

UPDATE alembic_version SET version_num='0006_protocols' WHERE alembic_version.version_num = '0005_samples_last_write_wins';

-- Running upgrade 0006_protocols -> 0007_timescale_roles

DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgpulse_tiers') THEN
        CREATE ROLE pgpulse_tiers LOGIN;
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END $$;

DO $$ BEGIN
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         AND NOT pg_has_role(current_user, 'pgpulse_tiers', 'MEMBER') THEN
        EXECUTE format('GRANT pgpulse_tiers TO %I', current_user);
      END IF;
      IF current_setting('server_version_num')::integer >= 160000 THEN
        EXECUTE 'GRANT pgpulse_tiers TO pgpulse_writer WITH INHERIT FALSE, SET TRUE';
      ELSE
        EXECUTE 'GRANT pgpulse_tiers TO pgpulse_writer';
      END IF;
    END $$;

GRANT USAGE ON SCHEMA public TO pgpulse_tiers;

GRANT SELECT ON samples, system_metrics TO pgpulse_tiers;

ALTER MATERIALIZED VIEW samples_5m OWNER TO pgpulse_tiers;

ALTER MATERIALIZED VIEW system_metrics_5m OWNER TO pgpulse_tiers;

ALTER MATERIALIZED VIEW samples_1h OWNER TO pgpulse_tiers;

ALTER MATERIALIZED VIEW system_metrics_1h OWNER TO pgpulse_tiers;

CREATE FUNCTION pgpulse_chunk_interval(keep interval, usual interval)
    RETURNS interval LANGUAGE sql IMMUTABLE AS $$
        SELECT least(usual, greatest(INTERVAL '1 hour',
               make_interval(hours => floor(extract(epoch FROM keep) / 7 / 3600)::integer)))
    $$;

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
    END $$;

UPDATE alembic_version SET version_num='0007_timescale_roles' WHERE alembic_version.version_num = '0006_protocols';

-- Running upgrade 0007_timescale_roles -> 0008_audit

CREATE TABLE audit_log (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            actor text NOT NULL,
            actor_key_id bigint,
            action text NOT NULL,
            target text,
            address text,
            outcome text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
            details jsonb NOT NULL DEFAULT '{}'::jsonb
        );

CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE INDEX audit_log_action_idx ON audit_log (action, id);

CREATE FUNCTION pgpulse_audit_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION pgpulse_audit_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_audit_append_only();

REVOKE ALL ON audit_log FROM PUBLIC, pgpulse_writer, pgpulse_reader;

GRANT SELECT, INSERT ON audit_log TO pgpulse_writer;

REVOKE ALL ON FUNCTION pgpulse_audit_append_only() FROM PUBLIC;

UPDATE alembic_version SET version_num='0008_audit' WHERE alembic_version.version_num = '0007_timescale_roles';

-- Running upgrade 0008_audit -> 0009_citus

UPDATE alembic_version SET version_num='0009_citus' WHERE alembic_version.version_num = '0008_audit';

-- Running upgrade 0009_citus -> 0010_tenants

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
        );

INSERT INTO tenants (id, name) VALUES ('default', 'default');

GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO pgpulse_writer;

GRANT SELECT ON tenants TO pgpulse_reader;

ALTER TABLE api_keys ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE series ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE system_metrics ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE reading_analytics ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE etl_runs ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE etl_rejects ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE metric_metadata ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

ALTER TABLE series ADD CONSTRAINT series_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

ALTER TABLE reading_analytics ADD CONSTRAINT reading_analytics_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

ALTER TABLE api_keys ADD CONSTRAINT api_keys_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

ALTER TABLE etl_runs ADD CONSTRAINT etl_runs_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

ALTER TABLE etl_rejects ADD CONSTRAINT etl_rejects_tenant_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id);

ALTER TABLE series DROP CONSTRAINT series_name_labels_key;

ALTER TABLE series ADD CONSTRAINT series_tenant_name_labels_key UNIQUE (tenant_id, name, labels);

ALTER TABLE metric_metadata DROP CONSTRAINT metric_metadata_pkey;

ALTER TABLE metric_metadata ADD PRIMARY KEY (tenant_id, name);

ALTER TABLE system_metrics DROP CONSTRAINT system_metrics_host_time_key;

CREATE UNIQUE INDEX system_metrics_tenant_host_time_key ON system_metrics (tenant_id, host, time);

ALTER TABLE audit_log ADD COLUMN actor_tenant text;

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

CREATE INDEX reading_analytics_tenant_idx ON reading_analytics (tenant_id, reading_time, id);

CREATE INDEX etl_rejects_tenant_idx ON etl_rejects (tenant_id, created_at, id);

UPDATE alembic_version SET version_num='0010_tenants' WHERE alembic_version.version_num = '0009_citus';

-- Running upgrade 0010_tenants -> 0011_tier_covering_keys

UPDATE alembic_version SET version_num='0011_tier_covering_keys' WHERE alembic_version.version_num = '0010_tenants';

-- Running upgrade 0011_tier_covering_keys -> 0012_usage

CREATE TABLE usage_monthly (
            tenant text NOT NULL,
            month date NOT NULL CHECK (month = date_trunc('month', month)::date),
            samples bigint NOT NULL DEFAULT 0 CHECK (samples >= 0),
            PRIMARY KEY (tenant, month)
        );

GRANT SELECT, INSERT, UPDATE ON usage_monthly TO pgpulse_writer;

GRANT SELECT ON usage_monthly TO pgpulse_reader;

UPDATE alembic_version SET version_num='0012_usage' WHERE alembic_version.version_num = '0011_tier_covering_keys';

-- Running upgrade 0012_usage -> 0013_compressed_raw

CREATE FUNCTION pgpulse_samples(ids bigint[], lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s
        WHERE s.series_id = ANY(ids) AND s.time >= lo AND s.time < hi
    $$;

CREATE FUNCTION pgpulse_samples_between(lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s WHERE s.time >= lo AND s.time < hi
    $$;

CREATE VIEW samples_all AS SELECT time, series_id, value FROM samples;

CREATE FUNCTION pgpulse_compress_samples(after interval, raw_keep interval,
        at timestamptz DEFAULT now())
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT 0::bigint $$;

GRANT SELECT ON samples_all TO pgpulse_reader;

REVOKE ALL ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) TO pgpulse_writer;

UPDATE alembic_version SET version_num='0013_compressed_raw' WHERE alembic_version.version_num = '0012_usage';

COMMIT;

