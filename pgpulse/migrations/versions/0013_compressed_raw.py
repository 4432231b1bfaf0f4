"""Raw samples compressed on both engines, read through one function.

* timescale: TimescaleDB's native compression of ``samples`` (segment by
  ``series_id``, order by time) was set up by revision 0001; its policy's age now
  comes from ``PGPULSE_COMPRESS_AFTER_HOURS`` (``pgpulse_configure``, unchanged).
  Inserts and upserts into compressed chunks are TimescaleDB's own (2.11 and later
  decompress the batches a conflicting row falls in), so last write wins as before.
* portable: ``samples_packed``, one row per series and hour holding that hour's
  samples as two arrays: ``times_us`` (microseconds, the first from the hour, each
  next one from the previous: a regular scrape repeats one number, which lz4 folds
  to almost nothing) and ``vals``. ``pgpulse_compress_samples()`` (pgpulse's
  scheduler) moves whole hours older than the setting out of ``samples`` in one
  statement (``DELETE ... RETURNING`` feeding the insert: exactly the rows deleted
  are packed). A sample is in ``samples`` or in ``samples_packed``, never both: a
  write into a packed hour stays in ``samples`` and a statement trigger takes that
  (series, time) out of the packed arrays (the newer write wins) and logs the hour,
  which the next compression run packs again.

Readers call ``pgpulse_samples(ids, lo, hi)`` (rows of those series in [lo, hi))
or ``pgpulse_samples_between(lo, hi)`` (every series), inlinable SQL functions that
prune the packed rows by hour; ``samples_all`` is the same as a view for ad hoc SQL
and Grafana. On timescale all three read ``samples``, which TimescaleDB decompresses
itself. The portable rollup function reads through ``pgpulse_samples_between``, so
a late write into a packed hour re-aggregates from the whole hour.

On Citus (revision 0009) the portable engine keeps its raw samples unpacked: the
readers are the plain ones, as on timescale, and ``pgpulse_compress_samples()`` does
nothing (Citus refuses the trigger on a distributed ``samples``, and a packed table
would need distributing beside it).

Revision ID: 0013_compressed_raw
Revises: 0012_usage
Create Date: 2026-12-02
"""

from alembic import context, op
from sqlalchemy import text

revision = "0013_compressed_raw"
down_revision = "0012_usage"
branch_labels = None
depends_on = None

EPOCH = "'1970-01-01 00:00:00+00'::timestamptz"


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


def citus() -> bool:
    """True when this database has the citus extension (never in offline mode)."""
    if context.is_offline_mode():
        return False
    found = op.get_bind().execute(text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"))
    return bool(found.scalar())


def packed() -> bool:
    """Whether this database gets pgpulse's packed hours (portable, single node)."""
    return engine() == "portable" and not citus()


TIMESCALE_READS = [
    """
    CREATE FUNCTION pgpulse_samples(ids bigint[], lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s
        WHERE s.series_id = ANY(ids) AND s.time >= lo AND s.time < hi
    $$
    """,
    """
    CREATE FUNCTION pgpulse_samples_between(lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE sql STABLE AS $$
        SELECT s.series_id, s.time, s.value FROM samples s WHERE s.time >= lo AND s.time < hi
    $$
    """,
    "CREATE VIEW samples_all AS SELECT time, series_id, value FROM samples",
    # One API in both modes: TimescaleDB's compression policy does the work.
    """
    CREATE FUNCTION pgpulse_compress_samples(after interval, raw_keep interval,
        at timestamptz DEFAULT now())
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ SELECT 0::bigint $$
    """,
]

# Citus plans no parameterized call of a SQL function that reads a distributed table
# ("use PL/pgSQL functions instead"): there the same two readers are PL/pgSQL, whose
# query Citus plans with the arguments as values.
CITUS_READS = [
    """
    CREATE FUNCTION pgpulse_samples(ids bigint[], lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE plpgsql STABLE AS $$
    BEGIN
        RETURN QUERY SELECT s.series_id, s.time, s.value FROM samples s
            WHERE s.series_id = ANY(ids) AND s.time >= lo AND s.time < hi;
    END
    $$
    """,
    """
    CREATE FUNCTION pgpulse_samples_between(lo timestamptz, hi timestamptz)
    RETURNS TABLE (series_id bigint, "time" timestamptz, value double precision)
    LANGUAGE plpgsql STABLE AS $$
    BEGIN
        RETURN QUERY SELECT s.series_id, s.time, s.value FROM samples s WHERE s.time >= lo AND s.time < hi;
    END
    $$
    """,
    *TIMESCALE_READS[2:],
]

# -- portable ------------------------------------------------------------------------

PACKED_TABLE = [
    f"""
    CREATE TABLE samples_packed (
        series_id bigint NOT NULL,
        hour timestamptz NOT NULL,
        times_us bigint[] NOT NULL,
        vals double precision[] NOT NULL,
        PRIMARY KEY (series_id, hour),
        CONSTRAINT samples_packed_whole_hour CHECK (hour = date_bin(INTERVAL '1 hour', hour, {EPOCH})),
        CONSTRAINT samples_packed_same_length CHECK (cardinality(times_us) = cardinality(vals))
    )
    """,
    # Retention deletes by hour, and the newest packed hour is where writes start
    # to be checked against the packed rows.
    "CREATE INDEX samples_packed_hour_idx ON samples_packed (hour)",
    # Compress every row, not only those over the default ~2 kB: a series sampled
    # once a minute has 60 samples an hour.
    "ALTER TABLE samples_packed SET (toast_tuple_target = 128)",
    # lz4 where the server was built with it (Debian's and the embedded one are);
    # otherwise PostgreSQL's default pglz, slower and a little larger.
    """
    DO $$ BEGIN
        ALTER TABLE samples_packed ALTER COLUMN times_us SET COMPRESSION lz4,
                                   ALTER COLUMN vals SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported THEN NULL;
    END $$
    """,
    "GRANT SELECT, INSERT, UPDATE, DELETE ON samples_packed TO pgpulse_writer",
    "GRANT SELECT ON samples_packed TO pgpulse_reader",
    """
    CREATE TABLE pgpulse_repack (
        hour timestamptz PRIMARY KEY
    )
    """,
    "GRANT SELECT, INSERT, UPDATE, DELETE ON pgpulse_repack TO pgpulse_writer",
]

PORTABLE_FUNCTIONS = [
    # (offset from the hour in µs, value) of a packed row, oldest first.
    """
    CREATE FUNCTION pgpulse_unpack(times_us bigint[], vals double precision[])
    RETURNS TABLE (us bigint, value double precision)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT (sum(d) OVER (ORDER BY n))::bigint, v
        FROM unnest(times_us, vals) WITH ORDINALITY AS x(d, v, n)
    $$
    """,
    # A packed row merged with new (offset, value) pairs: a new pair replaces the
    # packed one at the same offset, a NULL value removes it. Returns the packed
    # arrays (empty when nothing is left).
    """
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
    $$
    """,
    """
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
    $$
    """,
    """
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
    $$
    """,
    """
    CREATE VIEW samples_all AS
    SELECT time, series_id, value FROM samples
    UNION ALL
    SELECT p.hour + o.us * INTERVAL '1 microsecond', p.series_id, o.value
    FROM samples_packed p CROSS JOIN LATERAL pgpulse_unpack(p.times_us, p.vals) o
    """,
    # A statement that writes into a packed hour: its rows stay in samples, the same
    # (series, time) leave the packed arrays (last write wins, and no reader sees a
    # sample twice), and the hour is logged for the next compression run. Writes
    # after the newest packed hour (on-time ingest) cost one comparison each.
    f"""
    CREATE FUNCTION pgpulse_unpack_overwritten() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        mark timestamptz := (SELECT max(hour) + INTERVAL '1 hour' FROM samples_packed);
    BEGIN
        IF mark IS NULL OR NOT EXISTS (SELECT 1 FROM pgpulse_packed_new n WHERE n.time < mark) THEN
            RETURN NULL;
        END IF;
        WITH hit AS (
            SELECT n.series_id, date_bin(INTERVAL '1 hour', n.time, {EPOCH}) AS hour,
                   array_agg((extract(epoch FROM n.time - date_bin(INTERVAL '1 hour', n.time, {EPOCH}))
                              * 1000000)::bigint) AS us
            FROM pgpulse_packed_new n WHERE n.time < mark GROUP BY 1, 2
        )
        UPDATE samples_packed p SET (times_us, vals) = (
            SELECT k.packed_us, k.packed_vals
            FROM pgpulse_pack(p.times_us, p.vals, h.us,
                              array_fill(NULL::double precision, ARRAY[cardinality(h.us)])) k)
        FROM hit h WHERE p.series_id = h.series_id AND p.hour = h.hour;
        INSERT INTO pgpulse_repack (hour)
        SELECT DISTINCT date_bin(INTERVAL '1 hour', n.time, {EPOCH}) FROM pgpulse_packed_new n
        WHERE n.time < mark
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER samples_unpack_overwritten AFTER INSERT ON samples "
    "REFERENCING NEW TABLE AS pgpulse_packed_new FOR EACH STATEMENT "
    "EXECUTE FUNCTION pgpulse_unpack_overwritten()",
    # Packs, in one transaction: the hours from the newest packed one up to the
    # cutoff, and the hours logged by the trigger. The cutoff is a whole hour at
    # most ``at - after`` and never above the 5m tier's watermark: the tier views'
    # live part reads samples above the watermark, which therefore stays unpacked.
    # Packed hours past the raw retention go as samples' day partitions do.
    f"""
    CREATE FUNCTION pgpulse_compress_samples(after interval, raw_keep interval,
        at timestamptz DEFAULT now())
    RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        cutoff timestamptz := least(date_bin(INTERVAL '1 hour', at - after, {EPOCH}),
                                    date_bin(INTERVAL '1 hour', pgpulse_watermark('samples_5m'), {EPOCH}));
        since timestamptz := coalesce((SELECT max(hour) + INTERVAL '1 hour' FROM samples_packed),
                                      '-infinity');
        hours tstzmultirange;
        rg tstzrange;
        moved bigint := 0;
        k bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pgpulse_compress_samples'));
        DELETE FROM samples_packed WHERE hour < date_bin(INTERVAL '1 day', at - raw_keep, {EPOCH});
        WITH taken AS (DELETE FROM pgpulse_repack r WHERE r.hour < cutoff RETURNING r.hour)
        SELECT coalesce(range_agg(tstzrange(t.hour, t.hour + INTERVAL '1 hour')), '{{}}'::tstzmultirange)
        INTO hours FROM taken t;
        IF since < cutoff THEN
            hours := hours + tstzmultirange(tstzrange(since, cutoff));
        END IF;
        FOR rg IN SELECT unnest(hours) LOOP
            WITH gone AS (
                DELETE FROM samples s WHERE s.time >= lower(rg) AND s.time < upper(rg)
                RETURNING s.series_id, s.time, s.value
            ), grouped AS (
                SELECT g.series_id, date_bin(INTERVAL '1 hour', g.time, {EPOCH}) AS hour,
                       array_agg((extract(epoch FROM g.time - date_bin(INTERVAL '1 hour', g.time, {EPOCH}))
                                  * 1000000)::bigint) AS us,
                       array_agg(g.value) AS vals, count(*) AS n
                FROM gone g GROUP BY 1, 2
            ), written AS (
                INSERT INTO samples_packed AS p (series_id, hour, times_us, vals)
                SELECT g.series_id, g.hour, k.packed_us, k.packed_vals
                FROM grouped g, pgpulse_pack('{{}}', '{{}}', g.us, g.vals) k
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
    END $$
    """,
]

# The portable rollup function of revision 0003, reading raw samples through
# pgpulse_samples_between (packed hours included).
def portable_refresh_sql() -> str:
    previous = context.script.get_revision("0003_late_data").module
    text = previous.refresh_sql(True)
    old = "FROM samples\n"
    if text.count(old) != 1:
        raise RuntimeError("revision 0003's rollup SQL changed shape: update revision 0013")
    return text.replace(old, "FROM pgpulse_samples_between(lower(rg), upper(rg)) AS samples\n")


def upgrade() -> None:
    if not packed():
        for statement in CITUS_READS if engine() == "portable" else TIMESCALE_READS:
            op.execute(statement)
    else:
        for statement in PACKED_TABLE + PORTABLE_FUNCTIONS:
            op.execute(statement)
        op.execute(portable_refresh_sql())
    op.execute("GRANT SELECT ON samples_all TO pgpulse_reader")
    op.execute("REVOKE ALL ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION pgpulse_compress_samples(interval, interval, timestamptz) "
               "TO pgpulse_writer")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS pgpulse_compress_samples(interval, interval, timestamptz)")
    op.execute("DROP VIEW IF EXISTS samples_all")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_samples_between(timestamptz, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_samples(bigint[], timestamptz, timestamptz)")
    if not packed():
        return
    previous = context.script.get_revision("0003_late_data").module
    op.execute(previous.refresh_sql(True))
    op.execute("DROP TRIGGER IF EXISTS samples_unpack_overwritten ON samples")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_unpack_overwritten()")
    # Packed samples go back to samples, so a downgrade loses nothing.
    op.execute(
        """
        INSERT INTO samples (time, series_id, value)
        SELECT p.hour + o.us * INTERVAL '1 microsecond', p.series_id, o.value
        FROM samples_packed p CROSS JOIN LATERAL pgpulse_unpack(p.times_us, p.vals) o
        """
    )
    op.execute("DROP TABLE IF EXISTS samples_packed")
    op.execute("DROP TABLE IF EXISTS pgpulse_repack")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_pack(bigint[], double precision[], bigint[], double precision[])")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_unpack(bigint[], double precision[])")
