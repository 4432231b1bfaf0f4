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

CREATE TABLE system_metrics (
            time timestamptz NOT NULL,
            host text NOT NULL,
            data jsonb NOT NULL,
            CONSTRAINT system_metrics_host_time_key UNIQUE (host, time)
        ) PARTITION BY RANGE (time);

CREATE TABLE system_metrics_default PARTITION OF system_metrics DEFAULT;

CREATE TABLE samples (
            time timestamptz NOT NULL,
            series_id bigint NOT NULL,
            value double precision NOT NULL
        ) PARTITION BY RANGE (time);

CREATE TABLE samples_default PARTITION OF samples DEFAULT;

CREATE INDEX samples_series_time_idx ON samples (series_id, time DESC);

CREATE TABLE pgpulse_meta (
            key text PRIMARY KEY,
            value text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

INSERT INTO pgpulse_meta (key, value) VALUES ('engine', 'portable');

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

CREATE TABLE pgpulse_watermarks (
            relation text PRIMARY KEY,
            watermark timestamptz NOT NULL,
            refreshed_at timestamptz NOT NULL DEFAULT now()
        );

CREATE FUNCTION pgpulse_watermark(rel text) RETURNS timestamptz
        LANGUAGE sql STABLE AS $$
            SELECT coalesce((SELECT watermark FROM pgpulse_watermarks WHERE relation = rel),
                            '-infinity'::timestamptz)
        $$;

CREATE TABLE pgpulse_samples_5m_store (
                bucket timestamptz NOT NULL,
                series_id bigint NOT NULL,
                count bigint NOT NULL,
                sum double precision,
                min double precision,
                max double precision,
                last double precision,
                PRIMARY KEY (series_id, bucket)
            );

CREATE INDEX pgpulse_samples_5m_store_bucket_idx ON pgpulse_samples_5m_store (bucket);

CREATE TABLE pgpulse_system_metrics_5m_store (
                bucket timestamptz NOT NULL,
                host text NOT NULL,
                snapshots bigint NOT NULL,
                cpu_percent_count bigint NOT NULL, cpu_percent_sum double precision, cpu_percent_min double precision, cpu_percent_max double precision, cpu_percent_last double precision,
cpu_iowait_count bigint NOT NULL, cpu_iowait_sum double precision, cpu_iowait_min double precision, cpu_iowait_max double precision, cpu_iowait_last double precision,
load1_count bigint NOT NULL, load1_sum double precision, load1_min double precision, load1_max double precision, load1_last double precision,
load5_count bigint NOT NULL, load5_sum double precision, load5_min double precision, load5_max double precision, load5_last double precision,
load15_count bigint NOT NULL, load15_sum double precision, load15_min double precision, load15_max double precision, load15_last double precision,
mem_percent_count bigint NOT NULL, mem_percent_sum double precision, mem_percent_min double precision, mem_percent_max double precision, mem_percent_last double precision,
swap_percent_count bigint NOT NULL, swap_percent_sum double precision, swap_percent_min double precision, swap_percent_max double precision, swap_percent_last double precision,
rootfs_percent_count bigint NOT NULL, rootfs_percent_sum double precision, rootfs_percent_min double precision, rootfs_percent_max double precision, rootfs_percent_last double precision,
disk_read_bps_count bigint NOT NULL, disk_read_bps_sum double precision, disk_read_bps_min double precision, disk_read_bps_max double precision, disk_read_bps_last double precision,
disk_write_bps_count bigint NOT NULL, disk_write_bps_sum double precision, disk_write_bps_min double precision, disk_write_bps_max double precision, disk_write_bps_last double precision,
net_rx_bps_count bigint NOT NULL, net_rx_bps_sum double precision, net_rx_bps_min double precision, net_rx_bps_max double precision, net_rx_bps_last double precision,
net_tx_bps_count bigint NOT NULL, net_tx_bps_sum double precision, net_tx_bps_min double precision, net_tx_bps_max double precision, net_tx_bps_last double precision,
procs_count bigint NOT NULL, procs_sum double precision, procs_min double precision, procs_max double precision, procs_last double precision,
                PRIMARY KEY (host, bucket)
            );

CREATE INDEX pgpulse_system_metrics_5m_store_bucket_idx ON pgpulse_system_metrics_5m_store (bucket);

CREATE TABLE pgpulse_samples_1h_store (
                bucket timestamptz NOT NULL,
                series_id bigint NOT NULL,
                count bigint NOT NULL,
                sum double precision,
                min double precision,
                max double precision,
                last double precision,
                PRIMARY KEY (series_id, bucket)
            );

CREATE INDEX pgpulse_samples_1h_store_bucket_idx ON pgpulse_samples_1h_store (bucket);

CREATE TABLE pgpulse_system_metrics_1h_store (
                bucket timestamptz NOT NULL,
                host text NOT NULL,
                snapshots bigint NOT NULL,
                cpu_percent_count bigint NOT NULL, cpu_percent_sum double precision, cpu_percent_min double precision, cpu_percent_max double precision, cpu_percent_last double precision,
cpu_iowait_count bigint NOT NULL, cpu_iowait_sum double precision, cpu_iowait_min double precision, cpu_iowait_max double precision, cpu_iowait_last double precision,
load1_count bigint NOT NULL, load1_sum double precision, load1_min double precision, load1_max double precision, load1_last double precision,
load5_count bigint NOT NULL, load5_sum double precision, load5_min double precision, load5_max double precision, load5_last double precision,
load15_count bigint NOT NULL, load15_sum double precision, load15_min double precision, load15_max double precision, load15_last double precision,
mem_percent_count bigint NOT NULL, mem_percent_sum double precision, mem_percent_min double precision, mem_percent_max double precision, mem_percent_last double precision,
swap_percent_count bigint NOT NULL, swap_percent_sum double precision, swap_percent_min double precision, swap_percent_max double precision, swap_percent_last double precision,
rootfs_percent_count bigint NOT NULL, rootfs_percent_sum double precision, rootfs_percent_min double precision, rootfs_percent_max double precision, rootfs_percent_last double precision,
disk_read_bps_count bigint NOT NULL, disk_read_bps_sum double precision, disk_read_bps_min double precision, disk_read_bps_max double precision, disk_read_bps_last double precision,
disk_write_bps_count bigint NOT NULL, disk_write_bps_sum double precision, disk_write_bps_min double precision, disk_write_bps_max double precision, disk_write_bps_last double precision,
net_rx_bps_count bigint NOT NULL, net_rx_bps_sum double precision, net_rx_bps_min double precision, net_rx_bps_max double precision, net_rx_bps_last double precision,
net_tx_bps_count bigint NOT NULL, net_tx_bps_sum double precision, net_tx_bps_min double precision, net_tx_bps_max double precision, net_tx_bps_last double precision,
procs_count bigint NOT NULL, procs_sum double precision, procs_min double precision, procs_max double precision, procs_last double precision,
                PRIMARY KEY (host, bucket)
            );

CREATE INDEX pgpulse_system_metrics_1h_store_bucket_idx ON pgpulse_system_metrics_1h_store (bucket);

CREATE VIEW samples_5m AS
        SELECT * FROM pgpulse_samples_5m_store WHERE bucket < pgpulse_watermark('samples_5m')
        UNION ALL
        
        SELECT date_bin(INTERVAL '5 minutes', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
               count(value) AS count, sum(value) AS sum, min(value) AS min,
               max(value) AS max, (array_agg(value ORDER BY time DESC))[1] AS last
        FROM samples
    
        WHERE time >= pgpulse_watermark('samples_5m')
        GROUP BY 1, 2;

CREATE VIEW samples_1h AS
        SELECT * FROM pgpulse_samples_1h_store WHERE bucket < pgpulse_watermark('samples_1h')
        UNION ALL
        
        SELECT date_bin(INTERVAL '1 hour', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
               sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, (array_agg(last ORDER BY bucket DESC))[1] AS last
    
        FROM samples_5m
        WHERE bucket >= pgpulse_watermark('samples_1h')
        GROUP BY 1, 2;

CREATE VIEW system_metrics_5m AS
        SELECT * FROM pgpulse_system_metrics_5m_store
        WHERE bucket < pgpulse_watermark('system_metrics_5m')
        UNION ALL
        
        SELECT date_bin(INTERVAL '5 minutes', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
               count(*) AS snapshots,
        count(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END ORDER BY time DESC))[1] AS cpu_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END ORDER BY time DESC))[1] AS cpu_iowait_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_min, max(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END ORDER BY time DESC))[1] AS load1_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_min, max(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END ORDER BY time DESC))[1] AS load5_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_min, max(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END ORDER BY time DESC))[1] AS load15_last,
count(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_min, max(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END ORDER BY time DESC))[1] AS mem_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_min, max(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END ORDER BY time DESC))[1] AS swap_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_min, max(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END ORDER BY time DESC))[1] AS rootfs_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_read_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_write_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_rx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_tx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_count, sum(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_sum, min(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_min, max(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END ORDER BY time DESC))[1] AS procs_last
        FROM system_metrics
    
        WHERE time >= pgpulse_watermark('system_metrics_5m')
        GROUP BY 1, 2;

CREATE VIEW system_metrics_1h AS
        SELECT * FROM pgpulse_system_metrics_1h_store
        WHERE bucket < pgpulse_watermark('system_metrics_1h')
        UNION ALL
        
        SELECT date_bin(INTERVAL '1 hour', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
               sum(snapshots)::bigint AS snapshots,
        sum(cpu_percent_count)::bigint AS cpu_percent_count, sum(cpu_percent_sum) AS cpu_percent_sum, min(cpu_percent_min) AS cpu_percent_min, max(cpu_percent_max) AS cpu_percent_max, (array_agg(cpu_percent_last ORDER BY bucket DESC))[1] AS cpu_percent_last,
sum(cpu_iowait_count)::bigint AS cpu_iowait_count, sum(cpu_iowait_sum) AS cpu_iowait_sum, min(cpu_iowait_min) AS cpu_iowait_min, max(cpu_iowait_max) AS cpu_iowait_max, (array_agg(cpu_iowait_last ORDER BY bucket DESC))[1] AS cpu_iowait_last,
sum(load1_count)::bigint AS load1_count, sum(load1_sum) AS load1_sum, min(load1_min) AS load1_min, max(load1_max) AS load1_max, (array_agg(load1_last ORDER BY bucket DESC))[1] AS load1_last,
sum(load5_count)::bigint AS load5_count, sum(load5_sum) AS load5_sum, min(load5_min) AS load5_min, max(load5_max) AS load5_max, (array_agg(load5_last ORDER BY bucket DESC))[1] AS load5_last,
sum(load15_count)::bigint AS load15_count, sum(load15_sum) AS load15_sum, min(load15_min) AS load15_min, max(load15_max) AS load15_max, (array_agg(load15_last ORDER BY bucket DESC))[1] AS load15_last,
sum(mem_percent_count)::bigint AS mem_percent_count, sum(mem_percent_sum) AS mem_percent_sum, min(mem_percent_min) AS mem_percent_min, max(mem_percent_max) AS mem_percent_max, (array_agg(mem_percent_last ORDER BY bucket DESC))[1] AS mem_percent_last,
sum(swap_percent_count)::bigint AS swap_percent_count, sum(swap_percent_sum) AS swap_percent_sum, min(swap_percent_min) AS swap_percent_min, max(swap_percent_max) AS swap_percent_max, (array_agg(swap_percent_last ORDER BY bucket DESC))[1] AS swap_percent_last,
sum(rootfs_percent_count)::bigint AS rootfs_percent_count, sum(rootfs_percent_sum) AS rootfs_percent_sum, min(rootfs_percent_min) AS rootfs_percent_min, max(rootfs_percent_max) AS rootfs_percent_max, (array_agg(rootfs_percent_last ORDER BY bucket DESC))[1] AS rootfs_percent_last,
sum(disk_read_bps_count)::bigint AS disk_read_bps_count, sum(disk_read_bps_sum) AS disk_read_bps_sum, min(disk_read_bps_min) AS disk_read_bps_min, max(disk_read_bps_max) AS disk_read_bps_max, (array_agg(disk_read_bps_last ORDER BY bucket DESC))[1] AS disk_read_bps_last,
sum(disk_write_bps_count)::bigint AS disk_write_bps_count, sum(disk_write_bps_sum) AS disk_write_bps_sum, min(disk_write_bps_min) AS disk_write_bps_min, max(disk_write_bps_max) AS disk_write_bps_max, (array_agg(disk_write_bps_last ORDER BY bucket DESC))[1] AS disk_write_bps_last,
sum(net_rx_bps_count)::bigint AS net_rx_bps_count, sum(net_rx_bps_sum) AS net_rx_bps_sum, min(net_rx_bps_min) AS net_rx_bps_min, max(net_rx_bps_max) AS net_rx_bps_max, (array_agg(net_rx_bps_last ORDER BY bucket DESC))[1] AS net_rx_bps_last,
sum(net_tx_bps_count)::bigint AS net_tx_bps_count, sum(net_tx_bps_sum) AS net_tx_bps_sum, min(net_tx_bps_min) AS net_tx_bps_min, max(net_tx_bps_max) AS net_tx_bps_max, (array_agg(net_tx_bps_last ORDER BY bucket DESC))[1] AS net_tx_bps_last,
sum(procs_count)::bigint AS procs_count, sum(procs_sum) AS procs_sum, min(procs_min) AS procs_min, max(procs_max) AS procs_max, (array_agg(procs_last ORDER BY bucket DESC))[1] AS procs_last
    
        FROM system_metrics_5m
        WHERE bucket >= pgpulse_watermark('system_metrics_1h')
        GROUP BY 1, 2;

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
        END $$;

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
        END $$;

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
        END $$;

CREATE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
            keep_5m interval, at timestamptz DEFAULT now())
        RETURNS TABLE (relation text, buckets bigint)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            raw_floor timestamptz := date_bin(INTERVAL '1 hour', at - raw_keep, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
            floor_5m timestamptz := date_bin(INTERVAL '1 hour', at - keep_5m, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
            target_5m timestamptz := date_bin(INTERVAL '5 minutes', at, '1970-01-01 00:00:00+00'::timestamptz);
            lo_5m timestamptz;
            lo_1h timestamptz;
            target_1h timestamptz;
            n bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(hashtext('pgpulse_refresh_tiers'));

            -- samples: raw -> 5m
            lo_5m := greatest(pgpulse_watermark('samples_5m') - late, raw_floor);
            lo_5m := least(lo_5m, target_5m);
            DELETE FROM pgpulse_samples_5m_store WHERE bucket >= lo_5m AND bucket < target_5m;
            INSERT INTO pgpulse_samples_5m_store
            
        SELECT date_bin(INTERVAL '5 minutes', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
               count(value) AS count, sum(value) AS sum, min(value) AS min,
               max(value) AS max, (array_agg(value ORDER BY time DESC))[1] AS last
        FROM samples
    
            WHERE time >= lo_5m AND time < target_5m
            GROUP BY 1, 2;
            GET DIAGNOSTICS n = ROW_COUNT;
            relation := 'samples_5m'; buckets := n; RETURN NEXT;
            INSERT INTO pgpulse_watermarks (relation, watermark) VALUES ('samples_5m', target_5m)
            ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE SET watermark = EXCLUDED.watermark, refreshed_at = now();

            -- samples: 5m -> 1h (from the store only: whole hours below the 5m watermark)
            target_1h := date_bin(INTERVAL '1 hour', target_5m, '1970-01-01 00:00:00+00'::timestamptz);
            lo_1h := least(pgpulse_watermark('samples_1h'), date_bin(INTERVAL '1 hour', lo_5m, '1970-01-01 00:00:00+00'::timestamptz));
            lo_1h := least(greatest(lo_1h, floor_5m), target_1h);
            DELETE FROM pgpulse_samples_1h_store WHERE bucket >= lo_1h AND bucket < target_1h;
            INSERT INTO pgpulse_samples_1h_store
            
        SELECT date_bin(INTERVAL '1 hour', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
               sum(count)::bigint AS count, sum(sum) AS sum, min(min) AS min,
               max(max) AS max, (array_agg(last ORDER BY bucket DESC))[1] AS last
    
            FROM pgpulse_samples_5m_store
            WHERE bucket >= lo_1h AND bucket < target_1h
            GROUP BY 1, 2;
            GET DIAGNOSTICS n = ROW_COUNT;
            relation := 'samples_1h'; buckets := n; RETURN NEXT;
            INSERT INTO pgpulse_watermarks (relation, watermark) VALUES ('samples_1h', target_1h)
            ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE SET watermark = EXCLUDED.watermark, refreshed_at = now();

            -- system_metrics: raw -> 5m
            lo_5m := greatest(pgpulse_watermark('system_metrics_5m') - late, raw_floor);
            lo_5m := least(lo_5m, target_5m);
            DELETE FROM pgpulse_system_metrics_5m_store WHERE bucket >= lo_5m AND bucket < target_5m;
            INSERT INTO pgpulse_system_metrics_5m_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
            
        SELECT date_bin(INTERVAL '5 minutes', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
               count(*) AS snapshots,
        count(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END ORDER BY time DESC))[1] AS cpu_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_count, sum(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_sum, min(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_min, max(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END ORDER BY time DESC))[1] AS cpu_iowait_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_min, max(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END ORDER BY time DESC))[1] AS load1_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_min, max(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END ORDER BY time DESC))[1] AS load5_last,
count(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_count, sum(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_sum, min(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_min, max(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END ORDER BY time DESC))[1] AS load15_last,
count(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_min, max(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END ORDER BY time DESC))[1] AS mem_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_min, max(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END ORDER BY time DESC))[1] AS swap_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_count, sum(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_sum, min(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_min, max(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END ORDER BY time DESC))[1] AS rootfs_percent_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_read_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_min, max(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_write_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_rx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_count, sum(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_sum, min(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_min, max(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_tx_bps_last,
count(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_count, sum(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_sum, min(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_min, max(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_max, (array_agg(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END ORDER BY time DESC))[1] AS procs_last
        FROM system_metrics
    
            WHERE time >= lo_5m AND time < target_5m
            GROUP BY 1, 2;
            GET DIAGNOSTICS n = ROW_COUNT;
            relation := 'system_metrics_5m'; buckets := n; RETURN NEXT;
            INSERT INTO pgpulse_watermarks (relation, watermark) VALUES ('system_metrics_5m', target_5m)
            ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE SET watermark = EXCLUDED.watermark, refreshed_at = now();

            -- system_metrics: 5m -> 1h
            lo_1h := least(pgpulse_watermark('system_metrics_1h'), date_bin(INTERVAL '1 hour', lo_5m, '1970-01-01 00:00:00+00'::timestamptz));
            lo_1h := least(greatest(lo_1h, floor_5m), target_1h);
            DELETE FROM pgpulse_system_metrics_1h_store WHERE bucket >= lo_1h AND bucket < target_1h;
            INSERT INTO pgpulse_system_metrics_1h_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
            
        SELECT date_bin(INTERVAL '1 hour', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
               sum(snapshots)::bigint AS snapshots,
        sum(cpu_percent_count)::bigint AS cpu_percent_count, sum(cpu_percent_sum) AS cpu_percent_sum, min(cpu_percent_min) AS cpu_percent_min, max(cpu_percent_max) AS cpu_percent_max, (array_agg(cpu_percent_last ORDER BY bucket DESC))[1] AS cpu_percent_last,
sum(cpu_iowait_count)::bigint AS cpu_iowait_count, sum(cpu_iowait_sum) AS cpu_iowait_sum, min(cpu_iowait_min) AS cpu_iowait_min, max(cpu_iowait_max) AS cpu_iowait_max, (array_agg(cpu_iowait_last ORDER BY bucket DESC))[1] AS cpu_iowait_last,
sum(load1_count)::bigint AS load1_count, sum(load1_sum) AS load1_sum, min(load1_min) AS load1_min, max(load1_max) AS load1_max, (array_agg(load1_last ORDER BY bucket DESC))[1] AS load1_last,
sum(load5_count)::bigint AS load5_count, sum(load5_sum) AS load5_sum, min(load5_min) AS load5_min, max(load5_max) AS load5_max, (array_agg(load5_last ORDER BY bucket DESC))[1] AS load5_last,
sum(load15_count)::bigint AS load15_count, sum(load15_sum) AS load15_sum, min(load15_min) AS load15_min, max(load15_max) AS load15_max, (array_agg(load15_last ORDER BY bucket DESC))[1] AS load15_last,
sum(mem_percent_count)::bigint AS mem_percent_count, sum(mem_percent_sum) AS mem_percent_sum, min(mem_percent_min) AS mem_percent_min, max(mem_percent_max) AS mem_percent_max, (array_agg(mem_percent_last ORDER BY bucket DESC))[1] AS mem_percent_last,
sum(swap_percent_count)::bigint AS swap_percent_count, sum(swap_percent_sum) AS swap_percent_sum, min(swap_percent_min) AS swap_percent_min, max(swap_percent_max) AS swap_percent_max, (array_agg(swap_percent_last ORDER BY bucket DESC))[1] AS swap_percent_last,
sum(rootfs_percent_count)::bigint AS rootfs_percent_count, sum(rootfs_percent_sum) AS rootfs_percent_sum, min(rootfs_percent_min) AS rootfs_percent_min, max(rootfs_percent_max) AS rootfs_percent_max, (array_agg(rootfs_percent_last ORDER BY bucket DESC))[1] AS rootfs_percent_last,
sum(disk_read_bps_count)::bigint AS disk_read_bps_count, sum(disk_read_bps_sum) AS disk_read_bps_sum, min(disk_read_bps_min) AS disk_read_bps_min, max(disk_read_bps_max) AS disk_read_bps_max, (array_agg(disk_read_bps_last ORDER BY bucket DESC))[1] AS disk_read_bps_last,
sum(disk_write_bps_count)::bigint AS disk_write_bps_count, sum(disk_write_bps_sum) AS disk_write_bps_sum, min(disk_write_bps_min) AS disk_write_bps_min, max(disk_write_bps_max) AS disk_write_bps_max, (array_agg(disk_write_bps_last ORDER BY bucket DESC))[1] AS disk_write_bps_last,
sum(net_rx_bps_count)::bigint AS net_rx_bps_count, sum(net_rx_bps_sum) AS net_rx_bps_sum, min(net_rx_bps_min) AS net_rx_bps_min, max(net_rx_bps_max) AS net_rx_bps_max, (array_agg(net_rx_bps_last ORDER BY bucket DESC))[1] AS net_rx_bps_last,
sum(net_tx_bps_count)::bigint AS net_tx_bps_count, sum(net_tx_bps_sum) AS net_tx_bps_sum, min(net_tx_bps_min) AS net_tx_bps_min, max(net_tx_bps_max) AS net_tx_bps_max, (array_agg(net_tx_bps_last ORDER BY bucket DESC))[1] AS net_tx_bps_last,
sum(procs_count)::bigint AS procs_count, sum(procs_sum) AS procs_sum, min(procs_min) AS procs_min, max(procs_max) AS procs_max, (array_agg(procs_last ORDER BY bucket DESC))[1] AS procs_last
    
            FROM pgpulse_system_metrics_5m_store
            WHERE bucket >= lo_1h AND bucket < target_1h
            GROUP BY 1, 2;
            GET DIAGNOSTICS n = ROW_COUNT;
            relation := 'system_metrics_1h'; buckets := n; RETURN NEXT;
            INSERT INTO pgpulse_watermarks (relation, watermark) VALUES ('system_metrics_1h', target_1h)
            ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE SET watermark = EXCLUDED.watermark, refreshed_at = now();
        END $$;

SELECT pgpulse_ensure_partitions('samples', now() - INTERVAL '1 day', now() + INTERVAL '7 days');

SELECT pgpulse_ensure_partitions('system_metrics', now() - INTERVAL '1 day', now() + INTERVAL '7 days');

GRANT USAGE ON SCHEMA public TO pgpulse_reader, pgpulse_writer;

GRANT SELECT ON system_metrics, system_metrics_5m, system_metrics_1h, series, samples, samples_5m, samples_1h, reading_analytics, etl_runs, etl_rejects, pgpulse_meta TO pgpulse_reader;

GRANT SELECT ON pgpulse_watermarks TO pgpulse_reader;

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

CREATE TABLE pgpulse_invalidations (
            relation text NOT NULL CHECK (relation IN ('samples', 'system_metrics')),
            lo timestamptz NOT NULL,
            hi timestamptz NOT NULL,
            logged_at timestamptz NOT NULL DEFAULT now()
        );

ALTER TABLE pgpulse_watermarks ADD COLUMN previous timestamptz;

UPDATE pgpulse_watermarks SET previous = watermark;

CREATE OR REPLACE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
        keep_5m interval, at timestamptz DEFAULT now())
    RETURNS TABLE (relation text, buckets bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        raw_floor timestamptz := date_bin(INTERVAL '1 hour', at - raw_keep, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
        floor_5m timestamptz := date_bin(INTERVAL '1 hour', at - keep_5m, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
        target_5m timestamptz := date_bin(INTERVAL '5 minutes', at, '1970-01-01 00:00:00+00'::timestamptz);
        target_1h timestamptz := date_bin(INTERVAL '1 hour', at, '1970-01-01 00:00:00+00'::timestamptz);
        since timestamptz;
        r5 tstzmultirange;
        r1 tstzmultirange;
        rg tstzrange;
        n bigint;
        k bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pgpulse_refresh_tiers'));
        
        -- samples: raw -> 5m
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'samples_5m';
        
        WITH taken AS (
            DELETE FROM pgpulse_invalidations i WHERE i.relation = 'samples' RETURNING i.lo, i.hi
        )
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '5 minutes', lo, '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '5 minutes', hi, '1970-01-01 00:00:00+00'::timestamptz)
                                                + INTERVAL '5 minutes')),
                        '{}'::tstzmultirange)
        INTO r5 FROM taken;
        r5 := (r5 + tstzmultirange(tstzrange(least(coalesce(date_bin(INTERVAL '5 minutes', since - late, '1970-01-01 00:00:00+00'::timestamptz), '-infinity'), target_5m), target_5m)))
              * tstzmultirange(tstzrange(least(raw_floor, target_5m), target_5m));
        n := 0;
        FOR rg IN SELECT unnest(r5) LOOP
            
                DELETE FROM pgpulse_samples_5m_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_samples_5m_store (bucket, series_id, count, sum, min, max, last)
                SELECT date_bin(INTERVAL '300 seconds', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
       count(value) AS count,
       sum(value) AS sum,
       min(value) AS min,
       max(value) AS max,
       (array_agg(value ORDER BY time DESC))[1] AS last
FROM samples
                WHERE time >= lower(rg) AND time < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'samples_5m'; buckets := n; RETURN NEXT;

        -- samples: 5m -> 1h (from the 5m store: whole hours below the 5m watermark)
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'samples_1h';
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '1 hour', lower(u), '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '1 hour', upper(u) - INTERVAL '1 microsecond',
                                                     '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour')),
                        '{}'::tstzmultirange)
        INTO r1 FROM unnest(r5) AS u;
        r1 := (r1 + tstzmultirange(tstzrange(least(coalesce(since, '-infinity'), target_1h), target_1h)))
              * tstzmultirange(tstzrange(least(floor_5m, target_1h), target_1h));
        n := 0;
        FOR rg IN SELECT unnest(r1) LOOP
            
                DELETE FROM pgpulse_samples_1h_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_samples_1h_store (bucket, series_id, count, sum, min, max, last)
                SELECT date_bin(INTERVAL '3600 seconds', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
       sum(count)::bigint AS count,
       sum(sum) AS sum,
       min(min) AS min,
       max(max) AS max,
       (array_agg(last ORDER BY bucket DESC))[1] AS last
FROM pgpulse_samples_5m_store
                WHERE bucket >= lower(rg) AND bucket < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'samples_1h'; buckets := n; RETURN NEXT;

        INSERT INTO pgpulse_watermarks AS w (relation, watermark, previous)
        VALUES ('samples_5m', target_5m, target_5m),
               ('samples_1h', target_1h, target_1h)
        ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE
            SET previous = w.watermark, watermark = EXCLUDED.watermark, refreshed_at = now();

        -- system_metrics: raw -> 5m
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'system_metrics_5m';
        
        WITH taken AS (
            DELETE FROM pgpulse_invalidations i WHERE i.relation = 'system_metrics' RETURNING i.lo, i.hi
        )
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '5 minutes', lo, '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '5 minutes', hi, '1970-01-01 00:00:00+00'::timestamptz)
                                                + INTERVAL '5 minutes')),
                        '{}'::tstzmultirange)
        INTO r5 FROM taken;
        r5 := (r5 + tstzmultirange(tstzrange(least(coalesce(date_bin(INTERVAL '5 minutes', since - late, '1970-01-01 00:00:00+00'::timestamptz), '-infinity'), target_5m), target_5m)))
              * tstzmultirange(tstzrange(least(raw_floor, target_5m), target_5m));
        n := 0;
        FOR rg IN SELECT unnest(r5) LOOP
            
                DELETE FROM pgpulse_system_metrics_5m_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_system_metrics_5m_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
                SELECT date_bin(INTERVAL '300 seconds', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
       count(*) AS snapshots,
       count(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END ORDER BY time DESC))[1] AS cpu_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_count,
       sum(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_sum,
       min(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_min,
       max(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END ORDER BY time DESC))[1] AS cpu_iowait_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END ORDER BY time DESC))[1] AS load1_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END ORDER BY time DESC))[1] AS load5_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END ORDER BY time DESC))[1] AS load15_last,
       count(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END ORDER BY time DESC))[1] AS mem_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END ORDER BY time DESC))[1] AS swap_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END ORDER BY time DESC))[1] AS rootfs_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_read_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_write_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_rx_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_tx_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_count,
       sum(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_sum,
       min(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_min,
       max(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END ORDER BY time DESC))[1] AS procs_last
FROM system_metrics
                WHERE time >= lower(rg) AND time < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'system_metrics_5m'; buckets := n; RETURN NEXT;

        -- system_metrics: 5m -> 1h (from the 5m store: whole hours below the 5m watermark)
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'system_metrics_1h';
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '1 hour', lower(u), '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '1 hour', upper(u) - INTERVAL '1 microsecond',
                                                     '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour')),
                        '{}'::tstzmultirange)
        INTO r1 FROM unnest(r5) AS u;
        r1 := (r1 + tstzmultirange(tstzrange(least(coalesce(since, '-infinity'), target_1h), target_1h)))
              * tstzmultirange(tstzrange(least(floor_5m, target_1h), target_1h));
        n := 0;
        FOR rg IN SELECT unnest(r1) LOOP
            
                DELETE FROM pgpulse_system_metrics_1h_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_system_metrics_1h_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
                SELECT date_bin(INTERVAL '3600 seconds', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
       sum(snapshots)::bigint AS snapshots,
       sum(cpu_percent_count)::bigint AS cpu_percent_count,
       sum(cpu_percent_sum) AS cpu_percent_sum,
       min(cpu_percent_min) AS cpu_percent_min,
       max(cpu_percent_max) AS cpu_percent_max,
       (array_agg(cpu_percent_last ORDER BY bucket DESC))[1] AS cpu_percent_last,
       sum(cpu_iowait_count)::bigint AS cpu_iowait_count,
       sum(cpu_iowait_sum) AS cpu_iowait_sum,
       min(cpu_iowait_min) AS cpu_iowait_min,
       max(cpu_iowait_max) AS cpu_iowait_max,
       (array_agg(cpu_iowait_last ORDER BY bucket DESC))[1] AS cpu_iowait_last,
       sum(load1_count)::bigint AS load1_count,
       sum(load1_sum) AS load1_sum,
       min(load1_min) AS load1_min,
       max(load1_max) AS load1_max,
       (array_agg(load1_last ORDER BY bucket DESC))[1] AS load1_last,
       sum(load5_count)::bigint AS load5_count,
       sum(load5_sum) AS load5_sum,
       min(load5_min) AS load5_min,
       max(load5_max) AS load5_max,
       (array_agg(load5_last ORDER BY bucket DESC))[1] AS load5_last,
       sum(load15_count)::bigint AS load15_count,
       sum(load15_sum) AS load15_sum,
       min(load15_min) AS load15_min,
       max(load15_max) AS load15_max,
       (array_agg(load15_last ORDER BY bucket DESC))[1] AS load15_last,
       sum(mem_percent_count)::bigint AS mem_percent_count,
       sum(mem_percent_sum) AS mem_percent_sum,
       min(mem_percent_min) AS mem_percent_min,
       max(mem_percent_max) AS mem_percent_max,
       (array_agg(mem_percent_last ORDER BY bucket DESC))[1] AS mem_percent_last,
       sum(swap_percent_count)::bigint AS swap_percent_count,
       sum(swap_percent_sum) AS swap_percent_sum,
       min(swap_percent_min) AS swap_percent_min,
       max(swap_percent_max) AS swap_percent_max,
       (array_agg(swap_percent_last ORDER BY bucket DESC))[1] AS swap_percent_last,
       sum(rootfs_percent_count)::bigint AS rootfs_percent_count,
       sum(rootfs_percent_sum) AS rootfs_percent_sum,
       min(rootfs_percent_min) AS rootfs_percent_min,
       max(rootfs_percent_max) AS rootfs_percent_max,
       (array_agg(rootfs_percent_last ORDER BY bucket DESC))[1] AS rootfs_percent_last,
       sum(disk_read_bps_count)::bigint AS disk_read_bps_count,
       sum(disk_read_bps_sum) AS disk_read_bps_sum,
       min(disk_read_bps_min) AS disk_read_bps_min,
       max(disk_read_bps_max) AS disk_read_bps_max,
       (array_agg(disk_read_bps_last ORDER BY bucket DESC))[1] AS disk_read_bps_last,
       sum(disk_write_bps_count)::bigint AS disk_write_bps_count,
       sum(disk_write_bps_sum) AS disk_write_bps_sum,
       min(disk_write_bps_min) AS disk_write_bps_min,
       max(disk_write_bps_max) AS disk_write_bps_max,
       (array_agg(disk_write_bps_last ORDER BY bucket DESC))[1] AS disk_write_bps_last,
       sum(net_rx_bps_count)::bigint AS net_rx_bps_count,
       sum(net_rx_bps_sum) AS net_rx_bps_sum,
       min(net_rx_bps_min) AS net_rx_bps_min,
       max(net_rx_bps_max) AS net_rx_bps_max,
       (array_agg(net_rx_bps_last ORDER BY bucket DESC))[1] AS net_rx_bps_last,
       sum(net_tx_bps_count)::bigint AS net_tx_bps_count,
       sum(net_tx_bps_sum) AS net_tx_bps_sum,
       min(net_tx_bps_min) AS net_tx_bps_min,
       max(net_tx_bps_max) AS net_tx_bps_max,
       (array_agg(net_tx_bps_last ORDER BY bucket DESC))[1] AS net_tx_bps_last,
       sum(procs_count)::bigint AS procs_count,
       sum(procs_sum) AS procs_sum,
       min(procs_min) AS procs_min,
       max(procs_max) AS procs_max,
       (array_agg(procs_last ORDER BY bucket DESC))[1] AS procs_last
FROM pgpulse_system_metrics_5m_store
                WHERE bucket >= lower(rg) AND bucket < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'system_metrics_1h'; buckets := n; RETURN NEXT;

        INSERT INTO pgpulse_watermarks AS w (relation, watermark, previous)
        VALUES ('system_metrics_5m', target_5m, target_5m),
               ('system_metrics_1h', target_1h, target_1h)
        ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE
            SET previous = w.watermark, watermark = EXCLUDED.watermark, refreshed_at = now();

    END $$;

CREATE FUNCTION pgpulse_log_late_writes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        mark timestamptz := pgpulse_watermark(TG_TABLE_NAME || '_5m');
    BEGIN
        INSERT INTO pgpulse_invalidations (relation, lo, hi)
        SELECT TG_TABLE_NAME, min(n.time), max(n.time) FROM pgpulse_new_rows n
        WHERE n.time < mark
        GROUP BY date_bin(INTERVAL '1 hour', n.time, '1970-01-01 00:00:00+00'::timestamptz);
        RETURN NULL;
    END $$;

CREATE TRIGGER samples_log_late_writes AFTER INSERT ON samples REFERENCING NEW TABLE AS pgpulse_new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes();

CREATE TRIGGER system_metrics_log_late_writes AFTER INSERT ON system_metrics REFERENCING NEW TABLE AS pgpulse_new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes();

REVOKE ALL ON FUNCTION pgpulse_log_late_writes FROM PUBLIC;

GRANT SELECT ON pgpulse_invalidations TO pgpulse_writer;

UPDATE alembic_version SET version_num='0003_late_data' WHERE alembic_version.version_num = '0002_etl_rejects';

-- Running upgrade 0003_late_data -> 0004_etl_typed_ids

UPDATE reading_analytics SET mongo_id = to_jsonb(mongo_id)::text WHERE jsonb_typeof(payload -> '_id') = 'string';

UPDATE etl_rejects SET mongo_id = to_jsonb(mongo_id)::text WHERE jsonb_typeof(document -> '_id') = 'string';

ALTER TABLE etl_runs ADD COLUMN read_from text, ADD COLUMN warning text;

GRANT SELECT, INSERT, UPDATE, DELETE ON etl_runs TO pgpulse_writer;

GRANT SELECT ON etl_runs TO pgpulse_reader;

UPDATE alembic_version SET version_num='0004_etl_typed_ids' WHERE alembic_version.version_num = '0003_late_data';

-- Running upgrade 0004_etl_typed_ids -> 0005_samples_last_write_wins

CREATE TEMP TABLE pgpulse_samples_kept AS
    SELECT series_id, time, (array_agg(value ORDER BY ctid DESC))[1] AS value
    FROM samples GROUP BY series_id, time HAVING count(*) > 1;

DELETE FROM samples s USING pgpulse_samples_kept k
    WHERE s.series_id = k.series_id AND s.time = k.time;

INSERT INTO samples (time, series_id, value) SELECT time, series_id, value FROM pgpulse_samples_kept;

DROP TABLE pgpulse_samples_kept;

DROP INDEX samples_series_time_idx;

CREATE UNIQUE INDEX samples_series_time_key ON samples (series_id, time DESC);

CREATE TRIGGER samples_log_late_updates AFTER UPDATE ON samples REFERENCING NEW TABLE AS pgpulse_new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes();

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

ALTER TABLE system_metrics ADD CONSTRAINT system_metrics_tenant_host_time_key UNIQUE (tenant_id, host, time);

ALTER TABLE audit_log ADD COLUMN actor_tenant text;

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

CREATE INDEX reading_analytics_tenant_idx ON reading_analytics (tenant_id, reading_time, id);

CREATE INDEX etl_rejects_tenant_idx ON etl_rejects (tenant_id, created_at, id);

UPDATE alembic_version SET version_num='0010_tenants' WHERE alembic_version.version_num = '0009_citus';

-- Running upgrade 0010_tenants -> 0011_tier_covering_keys

ALTER TABLE pgpulse_samples_5m_store DROP CONSTRAINT pgpulse_samples_5m_store_pkey;

ALTER TABLE pgpulse_samples_5m_store ADD CONSTRAINT pgpulse_samples_5m_store_pkey PRIMARY KEY (series_id, bucket) INCLUDE (count, sum, min, max, last);

ALTER TABLE pgpulse_samples_1h_store DROP CONSTRAINT pgpulse_samples_1h_store_pkey;

ALTER TABLE pgpulse_samples_1h_store ADD CONSTRAINT pgpulse_samples_1h_store_pkey PRIMARY KEY (series_id, bucket) INCLUDE (count, sum, min, max, last);

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

CREATE TABLE samples_packed (
        series_id bigint NOT NULL,
        hour timestamptz NOT NULL,
        times_us bigint[] NOT NULL,
        vals double precision[] NOT NULL,
        PRIMARY KEY (series_id, hour),
        CONSTRAINT samples_packed_whole_hour CHECK (hour = date_bin(INTERVAL '1 hour', hour, '1970-01-01 00:00:00+00'::timestamptz)),
        CONSTRAINT samples_packed_same_length CHECK (cardinality(times_us) = cardinality(vals))
    );

CREATE INDEX samples_packed_hour_idx ON samples_packed (hour);

ALTER TABLE samples_packed SET (toast_tuple_target = 128);

DO $$ BEGIN
        ALTER TABLE samples_packed ALTER COLUMN times_us SET COMPRESSION lz4,
                                   ALTER COLUMN vals SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported THEN NULL;
    END $$;

GRANT SELECT, INSERT, UPDATE, DELETE ON samples_packed TO pgpulse_writer;

GRANT SELECT ON samples_packed TO pgpulse_reader;

CREATE TABLE pgpulse_repack (
        hour timestamptz PRIMARY KEY
    );

GRANT SELECT, INSERT, UPDATE, DELETE ON pgpulse_repack TO pgpulse_writer;

CREATE FUNCTION pgpulse_unpack(times_us bigint[], vals double precision[])
    RETURNS TABLE (us bigint, value double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT (sum(d) OVER (ORDER BY n))::bigint, v
        FROM unnest(times_us, vals) WITH ORDINALITY AS x(d, v, n)
    $$;

CREATE FUNCTION pgpulse_pack(times_us bigint[], vals double precision[],
        new_us bigint[], new_vals double precision[],
        OUT packed_us bigint[], OUT packed_vals double precision[])
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT coalesce(array_agg(us - prev ORDER BY us), '{}'),
               coalesce(array_agg(value ORDER BY us), '{}')
        FROM (SELECT us, value, coalesce(lag(us) OVER (ORDER BY us), 0) AS prev
              FROM (SELECT DISTINCT ON (us) us, value
                    FROM (SELECT n.us, n.value, 0 AS rank
                          FROM unnest(new_us, new_vals) AS n(us, value)
                          UNION ALL
                          SELECT o.us, o.value, 1 FROM pgpulse_unpack(times_us, vals) AS o) AS both_sides
                    ORDER BY us, rank) AS merged
              WHERE value IS NOT NULL) AS kept
    $$;

CREATE FUNCTION pgpulse_samples(ids bigint[], lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s
        WHERE s.series_id = ANY(ids) AND s.time >= lo AND s.time < hi
        UNION ALL
        SELECT u.series_id, u.time, u.value
        FROM (SELECT p.series_id, p.hour + o.us * INTERVAL '1 microsecond' AS time, o.value
              FROM samples_packed p CROSS JOIN LATERAL pgpulse_unpack(p.times_us, p.vals) o
              WHERE p.series_id = ANY(ids)
                AND p.hour > lo - INTERVAL '1 hour' AND p.hour < hi) u
        WHERE u.time >= lo AND u.time < hi
    $$;

CREATE FUNCTION pgpulse_samples_between(lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s WHERE s.time >= lo AND s.time < hi
        UNION ALL
        SELECT u.series_id, u.time, u.value
        FROM (SELECT p.series_id, p.hour + o.us * INTERVAL '1 microsecond' AS time, o.value
              FROM samples_packed p CROSS JOIN LATERAL pgpulse_unpack(p.times_us, p.vals) o
              WHERE p.hour > lo - INTERVAL '1 hour' AND p.hour < hi) u
        WHERE u.time >= lo AND u.time < hi
    $$;

CREATE VIEW samples_all AS
    SELECT time, series_id, value FROM samples
    UNION ALL
    SELECT p.hour + o.us * INTERVAL '1 microsecond', p.series_id, o.value
    FROM samples_packed p CROSS JOIN LATERAL pgpulse_unpack(p.times_us, p.vals) o;

CREATE FUNCTION pgpulse_unpack_overwritten() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        mark timestamptz := (SELECT max(hour) + INTERVAL '1 hour' FROM samples_packed);
    BEGIN
        IF mark IS NULL OR NOT EXISTS (SELECT 1 FROM pgpulse_packed_new n WHERE n.time < mark) THEN
            RETURN NULL;
        END IF;
        WITH hit AS (
            SELECT n.series_id, date_bin(INTERVAL '1 hour', n.time, '1970-01-01 00:00:00+00'::timestamptz) AS hour,
                   array_agg((extract(epoch FROM n.time - date_bin(INTERVAL '1 hour', n.time, '1970-01-01 00:00:00+00'::timestamptz))
                              * 1000000)::bigint) AS us
            FROM pgpulse_packed_new n WHERE n.time < mark GROUP BY 1, 2
        )
        UPDATE samples_packed p SET (times_us, vals) = (
            SELECT k.packed_us, k.packed_vals
            FROM pgpulse_pack(p.times_us, p.vals, h.us,
                              array_fill(NULL::double precision, ARRAY[cardinality(h.us)])) k)
        FROM hit h WHERE p.series_id = h.series_id AND p.hour = h.hour;
        INSERT INTO pgpulse_repack (hour)
        SELECT DISTINCT date_bin(INTERVAL '1 hour', n.time, '1970-01-01 00:00:00+00'::timestamptz) FROM pgpulse_packed_new n
        WHERE n.time < mark
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$;

CREATE TRIGGER samples_unpack_overwritten AFTER INSERT ON samples REFERENCING NEW TABLE AS pgpulse_packed_new FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_unpack_overwritten();

CREATE FUNCTION pgpulse_compress_samples(after interval, raw_keep interval,
        at timestamptz DEFAULT now())
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        cutoff timestamptz := least(date_bin(INTERVAL '1 hour', at - after, '1970-01-01 00:00:00+00'::timestamptz),
                                    date_bin(INTERVAL '1 hour', pgpulse_watermark('samples_5m'), '1970-01-01 00:00:00+00'::timestamptz));
        since timestamptz := coalesce((SELECT max(hour) + INTERVAL '1 hour' FROM samples_packed),
                                      '-infinity');
        hours tstzmultirange;
        rg tstzrange;
        moved bigint := 0;
        k bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pgpulse_compress_samples'));
        DELETE FROM samples_packed WHERE hour < date_bin(INTERVAL '1 day', at - raw_keep, '1970-01-01 00:00:00+00'::timestamptz);
        WITH taken AS (DELETE FROM pgpulse_repack r WHERE r.hour < cutoff RETURNING r.hour)
        SELECT coalesce(range_agg(tstzrange(t.hour, t.hour + INTERVAL '1 hour')), '{}'::tstzmultirange)
        INTO hours FROM taken t;
        IF since < cutoff THEN
            hours := hours + tstzmultirange(tstzrange(since, cutoff));
        END IF;
        FOR rg IN SELECT unnest(hours) LOOP
            WITH gone AS (
                DELETE FROM samples s WHERE s.time >= lower(rg) AND s.time < upper(rg)
                RETURNING s.series_id, s.time, s.value
            ), grouped AS (
                SELECT g.series_id, date_bin(INTERVAL '1 hour', g.time, '1970-01-01 00:00:00+00'::timestamptz) AS hour,
                       array_agg((extract(epoch FROM g.time - date_bin(INTERVAL '1 hour', g.time, '1970-01-01 00:00:00+00'::timestamptz))
                                  * 1000000)::bigint) AS us,
                       array_agg(g.value) AS vals, count(*) AS n
                FROM gone g GROUP BY 1, 2
            ), written AS (
                INSERT INTO samples_packed AS p (series_id, hour, times_us, vals)
                SELECT g.series_id, g.hour, k.packed_us, k.packed_vals
                FROM grouped g, pgpulse_pack('{}', '{}', g.us, g.vals) k
                ON CONFLICT (series_id, hour) DO UPDATE SET (times_us, vals) = (
                    SELECT m.packed_us, m.packed_vals
                    FROM (SELECT array_agg(e.us) AS us, array_agg(e.value) AS vals
                          FROM pgpulse_unpack(EXCLUDED.times_us, EXCLUDED.vals) e) x,
                         pgpulse_pack(p.times_us, p.vals, x.us, x.vals) m)
                RETURNING 1
            )
            SELECT coalesce(sum(g.n), 0) INTO k FROM grouped g;
            moved := moved + k;
        END LOOP;
        RETURN moved;
    END $$;

CREATE OR REPLACE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
        keep_5m interval, at timestamptz DEFAULT now())
    RETURNS TABLE (relation text, buckets bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        raw_floor timestamptz := date_bin(INTERVAL '1 hour', at - raw_keep, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
        floor_5m timestamptz := date_bin(INTERVAL '1 hour', at - keep_5m, '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour';
        target_5m timestamptz := date_bin(INTERVAL '5 minutes', at, '1970-01-01 00:00:00+00'::timestamptz);
        target_1h timestamptz := date_bin(INTERVAL '1 hour', at, '1970-01-01 00:00:00+00'::timestamptz);
        since timestamptz;
        r5 tstzmultirange;
        r1 tstzmultirange;
        rg tstzrange;
        n bigint;
        k bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pgpulse_refresh_tiers'));
        
        -- samples: raw -> 5m
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'samples_5m';
        
        WITH taken AS (
            DELETE FROM pgpulse_invalidations i WHERE i.relation = 'samples' RETURNING i.lo, i.hi
        )
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '5 minutes', lo, '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '5 minutes', hi, '1970-01-01 00:00:00+00'::timestamptz)
                                                + INTERVAL '5 minutes')),
                        '{}'::tstzmultirange)
        INTO r5 FROM taken;
        r5 := (r5 + tstzmultirange(tstzrange(least(coalesce(date_bin(INTERVAL '5 minutes', since - late, '1970-01-01 00:00:00+00'::timestamptz), '-infinity'), target_5m), target_5m)))
              * tstzmultirange(tstzrange(least(raw_floor, target_5m), target_5m));
        n := 0;
        FOR rg IN SELECT unnest(r5) LOOP
            
                DELETE FROM pgpulse_samples_5m_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_samples_5m_store (bucket, series_id, count, sum, min, max, last)
                SELECT date_bin(INTERVAL '300 seconds', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
       count(value) AS count,
       sum(value) AS sum,
       min(value) AS min,
       max(value) AS max,
       (array_agg(value ORDER BY time DESC))[1] AS last
FROM pgpulse_samples_between(lower(rg), upper(rg)) AS samples
                WHERE time >= lower(rg) AND time < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'samples_5m'; buckets := n; RETURN NEXT;

        -- samples: 5m -> 1h (from the 5m store: whole hours below the 5m watermark)
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'samples_1h';
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '1 hour', lower(u), '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '1 hour', upper(u) - INTERVAL '1 microsecond',
                                                     '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour')),
                        '{}'::tstzmultirange)
        INTO r1 FROM unnest(r5) AS u;
        r1 := (r1 + tstzmultirange(tstzrange(least(coalesce(since, '-infinity'), target_1h), target_1h)))
              * tstzmultirange(tstzrange(least(floor_5m, target_1h), target_1h));
        n := 0;
        FOR rg IN SELECT unnest(r1) LOOP
            
                DELETE FROM pgpulse_samples_1h_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_samples_1h_store (bucket, series_id, count, sum, min, max, last)
                SELECT date_bin(INTERVAL '3600 seconds', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, series_id,
       sum(count)::bigint AS count,
       sum(sum) AS sum,
       min(min) AS min,
       max(max) AS max,
       (array_agg(last ORDER BY bucket DESC))[1] AS last
FROM pgpulse_samples_5m_store
                WHERE bucket >= lower(rg) AND bucket < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'samples_1h'; buckets := n; RETURN NEXT;

        INSERT INTO pgpulse_watermarks AS w (relation, watermark, previous)
        VALUES ('samples_5m', target_5m, target_5m),
               ('samples_1h', target_1h, target_1h)
        ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE
            SET previous = w.watermark, watermark = EXCLUDED.watermark, refreshed_at = now();

        -- system_metrics: raw -> 5m
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'system_metrics_5m';
        
        WITH taken AS (
            DELETE FROM pgpulse_invalidations i WHERE i.relation = 'system_metrics' RETURNING i.lo, i.hi
        )
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '5 minutes', lo, '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '5 minutes', hi, '1970-01-01 00:00:00+00'::timestamptz)
                                                + INTERVAL '5 minutes')),
                        '{}'::tstzmultirange)
        INTO r5 FROM taken;
        r5 := (r5 + tstzmultirange(tstzrange(least(coalesce(date_bin(INTERVAL '5 minutes', since - late, '1970-01-01 00:00:00+00'::timestamptz), '-infinity'), target_5m), target_5m)))
              * tstzmultirange(tstzrange(least(raw_floor, target_5m), target_5m));
        n := 0;
        FOR rg IN SELECT unnest(r5) LOOP
            
                DELETE FROM pgpulse_system_metrics_5m_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_system_metrics_5m_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
                SELECT date_bin(INTERVAL '300 seconds', time, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
       count(*) AS snapshots,
       count(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END) AS cpu_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,percent}') = 'number' THEN (data #>> '{cpu,percent}')::double precision END ORDER BY time DESC))[1] AS cpu_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_count,
       sum(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_sum,
       min(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_min,
       max(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END) AS cpu_iowait_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{cpu,iowait}') = 'number' THEN (data #>> '{cpu,iowait}')::double precision END ORDER BY time DESC))[1] AS cpu_iowait_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END) AS load1_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load1}') = 'number' THEN (data #>> '{load,load1}')::double precision END ORDER BY time DESC))[1] AS load1_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END) AS load5_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load5}') = 'number' THEN (data #>> '{load,load5}')::double precision END ORDER BY time DESC))[1] AS load5_last,
       count(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_count,
       sum(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_sum,
       min(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_min,
       max(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END) AS load15_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{load,load15}') = 'number' THEN (data #>> '{load,load15}')::double precision END ORDER BY time DESC))[1] AS load15_last,
       count(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END) AS mem_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{memory,percent}') = 'number' THEN (data #>> '{memory,percent}')::double precision END ORDER BY time DESC))[1] AS mem_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END) AS swap_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{swap,percent}') = 'number' THEN (data #>> '{swap,percent}')::double precision END ORDER BY time DESC))[1] AS swap_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_count,
       sum(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_sum,
       min(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_min,
       max(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END) AS rootfs_percent_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{filesystems,/,percent}') = 'number' THEN (data #>> '{filesystems,/,percent}')::double precision END ORDER BY time DESC))[1] AS rootfs_percent_last,
       count(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END) AS disk_read_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,read_bytes_per_s}') = 'number' THEN (data #>> '{disk,read_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_read_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END) AS disk_write_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{disk,write_bytes_per_s}') = 'number' THEN (data #>> '{disk,write_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS disk_write_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END) AS net_rx_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{network,rx_bytes_per_s}') = 'number' THEN (data #>> '{network,rx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_rx_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_count,
       sum(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_sum,
       min(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_min,
       max(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END) AS net_tx_bps_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{network,tx_bytes_per_s}') = 'number' THEN (data #>> '{network,tx_bytes_per_s}')::double precision END ORDER BY time DESC))[1] AS net_tx_bps_last,
       count(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_count,
       sum(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_sum,
       min(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_min,
       max(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END) AS procs_max,
       (array_agg(CASE WHEN jsonb_typeof(data #> '{processes,count}') = 'number' THEN (data #>> '{processes,count}')::double precision END ORDER BY time DESC))[1] AS procs_last
FROM system_metrics
                WHERE time >= lower(rg) AND time < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'system_metrics_5m'; buckets := n; RETURN NEXT;

        -- system_metrics: 5m -> 1h (from the 5m store: whole hours below the 5m watermark)
        SELECT least(w.previous, w.watermark) INTO since FROM pgpulse_watermarks w WHERE w.relation = 'system_metrics_1h';
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '1 hour', lower(u), '1970-01-01 00:00:00+00'::timestamptz),
                                            date_bin(INTERVAL '1 hour', upper(u) - INTERVAL '1 microsecond',
                                                     '1970-01-01 00:00:00+00'::timestamptz) + INTERVAL '1 hour')),
                        '{}'::tstzmultirange)
        INTO r1 FROM unnest(r5) AS u;
        r1 := (r1 + tstzmultirange(tstzrange(least(coalesce(since, '-infinity'), target_1h), target_1h)))
              * tstzmultirange(tstzrange(least(floor_5m, target_1h), target_1h));
        n := 0;
        FOR rg IN SELECT unnest(r1) LOOP
            
                DELETE FROM pgpulse_system_metrics_1h_store WHERE bucket >= lower(rg) AND bucket < upper(rg);
                INSERT INTO pgpulse_system_metrics_1h_store (bucket, host, snapshots, cpu_percent_count, cpu_percent_sum, cpu_percent_min, cpu_percent_max, cpu_percent_last, cpu_iowait_count, cpu_iowait_sum, cpu_iowait_min, cpu_iowait_max, cpu_iowait_last, load1_count, load1_sum, load1_min, load1_max, load1_last, load5_count, load5_sum, load5_min, load5_max, load5_last, load15_count, load15_sum, load15_min, load15_max, load15_last, mem_percent_count, mem_percent_sum, mem_percent_min, mem_percent_max, mem_percent_last, swap_percent_count, swap_percent_sum, swap_percent_min, swap_percent_max, swap_percent_last, rootfs_percent_count, rootfs_percent_sum, rootfs_percent_min, rootfs_percent_max, rootfs_percent_last, disk_read_bps_count, disk_read_bps_sum, disk_read_bps_min, disk_read_bps_max, disk_read_bps_last, disk_write_bps_count, disk_write_bps_sum, disk_write_bps_min, disk_write_bps_max, disk_write_bps_last, net_rx_bps_count, net_rx_bps_sum, net_rx_bps_min, net_rx_bps_max, net_rx_bps_last, net_tx_bps_count, net_tx_bps_sum, net_tx_bps_min, net_tx_bps_max, net_tx_bps_last, procs_count, procs_sum, procs_min, procs_max, procs_last)
                SELECT date_bin(INTERVAL '3600 seconds', bucket, '1970-01-01 00:00:00+00'::timestamptz) AS bucket, host,
       sum(snapshots)::bigint AS snapshots,
       sum(cpu_percent_count)::bigint AS cpu_percent_count,
       sum(cpu_percent_sum) AS cpu_percent_sum,
       min(cpu_percent_min) AS cpu_percent_min,
       max(cpu_percent_max) AS cpu_percent_max,
       (array_agg(cpu_percent_last ORDER BY bucket DESC))[1] AS cpu_percent_last,
       sum(cpu_iowait_count)::bigint AS cpu_iowait_count,
       sum(cpu_iowait_sum) AS cpu_iowait_sum,
       min(cpu_iowait_min) AS cpu_iowait_min,
       max(cpu_iowait_max) AS cpu_iowait_max,
       (array_agg(cpu_iowait_last ORDER BY bucket DESC))[1] AS cpu_iowait_last,
       sum(load1_count)::bigint AS load1_count,
       sum(load1_sum) AS load1_sum,
       min(load1_min) AS load1_min,
       max(load1_max) AS load1_max,
       (array_agg(load1_last ORDER BY bucket DESC))[1] AS load1_last,
       sum(load5_count)::bigint AS load5_count,
       sum(load5_sum) AS load5_sum,
       min(load5_min) AS load5_min,
       max(load5_max) AS load5_max,
       (array_agg(load5_last ORDER BY bucket DESC))[1] AS load5_last,
       sum(load15_count)::bigint AS load15_count,
       sum(load15_sum) AS load15_sum,
       min(load15_min) AS load15_min,
       max(load15_max) AS load15_max,
       (array_agg(load15_last ORDER BY bucket DESC))[1] AS load15_last,
       sum(mem_percent_count)::bigint AS mem_percent_count,
       sum(mem_percent_sum) AS mem_percent_sum,
       min(mem_percent_min) AS mem_percent_min,
       max(mem_percent_max) AS mem_percent_max,
       (array_agg(mem_percent_last ORDER BY bucket DESC))[1] AS mem_percent_last,
       sum(swap_percent_count)::bigint AS swap_percent_count,
       sum(swap_percent_sum) AS swap_percent_sum,
       min(swap_percent_min) AS swap_percent_min,
       max(swap_percent_max) AS swap_percent_max,
       (array_agg(swap_percent_last ORDER BY bucket DESC))[1] AS swap_percent_last,
       sum(rootfs_percent_count)::bigint AS rootfs_percent_count,
       sum(rootfs_percent_sum) AS rootfs_percent_sum,
       min(rootfs_percent_min) AS rootfs_percent_min,
       max(rootfs_percent_max) AS rootfs_percent_max,
       (array_agg(rootfs_percent_last ORDER BY bucket DESC))[1] AS rootfs_percent_last,
       sum(disk_read_bps_count)::bigint AS disk_read_bps_count,
       sum(disk_read_bps_sum) AS disk_read_bps_sum,
       min(disk_read_bps_min) AS disk_read_bps_min,
       max(disk_read_bps_max) AS disk_read_bps_max,
       (array_agg(disk_read_bps_last ORDER BY bucket DESC))[1] AS disk_read_bps_last,
       sum(disk_write_bps_count)::bigint AS disk_write_bps_count,
       sum(disk_write_bps_sum) AS disk_write_bps_sum,
       min(disk_write_bps_min) AS disk_write_bps_min,
       max(disk_write_bps_max) AS disk_write_bps_max,
       (array_agg(disk_write_bps_last ORDER BY bucket DESC))[1] AS disk_write_bps_last,
       sum(net_rx_bps_count)::bigint AS net_rx_bps_count,
       sum(net_rx_bps_sum) AS net_rx_bps_sum,
       min(net_rx_bps_min) AS net_rx_bps_min,
       max(net_rx_bps_max) AS net_rx_bps_max,
       (array_agg(net_rx_bps_last ORDER BY bucket DESC))[1] AS net_rx_bps_last,
       sum(net_tx_bps_count)::bigint AS net_tx_bps_count,
       sum(net_tx_bps_sum) AS net_tx_bps_sum,
       min(net_tx_bps_min) AS net_tx_bps_min,
       max(net_tx_bps_max) AS net_tx_bps_max,
       (array_agg(net_tx_bps_last ORDER BY bucket DESC))[1] AS net_tx_bps_last,
       sum(procs_count)::bigint AS procs_count,
       sum(procs_sum) AS procs_sum,
       min(procs_min) AS procs_min,
       max(procs_max) AS procs_max,
       (array_agg(procs_last ORDER BY bucket DESC))[1] AS procs_last
FROM pgpulse_system_metrics_5m_store
                WHERE bucket >= lower(rg) AND bucket < upper(rg)
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;
        END LOOP;
        relation := 'system_metrics_1h'; buckets := n; RETURN NEXT;

        INSERT INTO pgpulse_watermarks AS w (relation, watermark, previous)
        VALUES ('system_metrics_5m', target_5m, target_5m),
               ('system_metrics_1h', target_1h, target_1h)
        ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE
            SET previous = w.watermark, watermark = EXCLUDED.watermark, refreshed_at = now();

    END $$;

GRANT SELECT ON samples_all TO pgpulse_reader;

REVOKE ALL ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) TO pgpulse_writer;

UPDATE alembic_version SET version_num='0013_compressed_raw' WHERE alembic_version.version_num = '0012_usage';

COMMIT;

