"""Late data reaches every tier.

* portable: an invalidation log (``pgpulse_invalidations``), as TimescaleDB keeps for
  its continuous aggregates. A statement-level trigger on ``samples`` and
  ``system_metrics`` records the time range of the rows each statement wrote below
  the 5m watermark, per hour (on-time rows cost one comparison each, nothing is
  recorded for them). ``pgpulse_refresh_tiers`` re-aggregates exactly the logged buckets, plus
  the part above the watermark, and the hours those touch in the 1h tier.
* timescale: the refresh policies' windows reach back to a day inside the retention
  of what they read (TimescaleDB's own invalidation log says which buckets in the
  window changed, and only those are re-materialised), so a write as old as the
  raw retention allows is in the tiers after the next policy run.

Neither engine refreshes a range whose source was dropped by retention: that would
empty the rollups there.

The rollup SQL is made from the tier registry (``pgpulse.tiers``). Its columns are
those revision 0001 created (tests/test_rollups.py checks); a change of the
registry's columns or aggregates is a new revision that re-creates the function.

Revision ID: 0003_late_data
Revises: 0002_etl_rejects
Create Date: 2026-12-01
"""

from alembic import context, op

from pgpulse import tiers

revision = "0003_late_data"
down_revision = "0002_etl_rejects"
branch_labels = None
depends_on = None

EPOCH = "'1970-01-01 00:00:00+00'::timestamptz"
RAW_TABLES = {"samples": "samples", "hosts": "system_metrics"}


def engine() -> str:
    """The engine mode ("timescale" or "portable") this database uses."""
    return context.config.attributes["engine"]


# -- portable ----------------------------------------------------------------------


def _store(family: str, t: tiers.Tier) -> str:
    return f"pgpulse_{t.relation(family)}_store"


def _rebuild(family: str, t: tiers.Tier, lo: str, hi: str) -> str:
    """Delete and re-aggregate ``t``'s buckets of ``family`` in [lo, hi); adds the
    buckets written to ``n``. Made from the tier registry."""
    src = tiers.tier(t.source)
    source = RAW_TABLES[family] if src.raw else _store(family, src)
    columns = ", ".join(tiers.store_columns(family))
    return f"""
                DELETE FROM {_store(family, t)} WHERE bucket >= {lo} AND bucket < {hi};
                INSERT INTO {_store(family, t)} ({columns})
                {tiers.rollup_select(family, t, source)}
                WHERE {src.time_column} >= {lo} AND {src.time_column} < {hi}
                GROUP BY 1, 2;
                GET DIAGNOSTICS k = ROW_COUNT;
                n := n + k;"""


def _family_block(family: str, log: bool) -> str:
    m5, h1 = tiers.ROLLED_UP
    raw = RAW_TABLES[family]
    rel_5m, rel_1h = m5.relation(family), h1.relation(family)
    since = "least(w.previous, w.watermark)" if log else "w.watermark"
    taken = f"""
        WITH taken AS (
            DELETE FROM pgpulse_invalidations i WHERE i.relation = '{raw}' RETURNING i.lo, i.hi
        )
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '5 minutes', lo, {EPOCH}),
                                            date_bin(INTERVAL '5 minutes', hi, {EPOCH})
                                                + INTERVAL '5 minutes')),
                        '{{}}'::tstzmultirange)
        INTO r5 FROM taken;""" if log else "\n        r5 := '{}'::tstzmultirange;"
    return f"""
        -- {raw}: raw -> 5m
        SELECT {since} INTO since FROM pgpulse_watermarks w WHERE w.relation = '{rel_5m}';
        {taken}
        r5 := (r5 + tstzmultirange(tstzrange(least(coalesce(date_bin(INTERVAL '5 minutes', since - late, {EPOCH}), '-infinity'), target_5m), target_5m)))
              * tstzmultirange(tstzrange(least(raw_floor, target_5m), target_5m));
        n := 0;
        FOR rg IN SELECT unnest(r5) LOOP
            {_rebuild(family, m5, "lower(rg)", "upper(rg)")}
        END LOOP;
        relation := '{rel_5m}'; buckets := n; RETURN NEXT;

        -- {raw}: 5m -> 1h (from the 5m store: whole hours below the 5m watermark)
        SELECT {since} INTO since FROM pgpulse_watermarks w WHERE w.relation = '{rel_1h}';
        SELECT coalesce(range_agg(tstzrange(date_bin(INTERVAL '1 hour', lower(u), {EPOCH}),
                                            date_bin(INTERVAL '1 hour', upper(u) - INTERVAL '1 microsecond',
                                                     {EPOCH}) + INTERVAL '1 hour')),
                        '{{}}'::tstzmultirange)
        INTO r1 FROM unnest(r5) AS u;
        r1 := (r1 + tstzmultirange(tstzrange(least(coalesce(since, '-infinity'), target_1h), target_1h)))
              * tstzmultirange(tstzrange(least(floor_5m, target_1h), target_1h));
        n := 0;
        FOR rg IN SELECT unnest(r1) LOOP
            {_rebuild(family, h1, "lower(rg)", "upper(rg)")}
        END LOOP;
        relation := '{rel_1h}'; buckets := n; RETURN NEXT;

        INSERT INTO pgpulse_watermarks AS w (relation, watermark{", previous" if log else ""})
        VALUES ('{rel_5m}', target_5m{", target_5m" if log else ""}),
               ('{rel_1h}', target_1h{", target_1h" if log else ""})
        ON CONFLICT ON CONSTRAINT pgpulse_watermarks_pkey DO UPDATE
            SET {"previous = w.watermark, " if log else ""}watermark = EXCLUDED.watermark, refreshed_at = now();
"""


# Each run rebuilds, per raw table:
# * 5m: the buckets of the logged late writes, and the forward range from
#   (least(previous, watermark) - late) to the last complete bucket. Starting from
#   the watermark the run *before* the last one had closes a race: a statement that
#   read the old watermark (so logged nothing) but committed after the last run's
#   snapshot is still re-aggregated.
# * 1h: the hours those 5m ranges touch, and its own forward range.
# All clamped to the first whole hour inside the source's retention, so a rebuild
# never reads a range whose source rows retention already dropped. Without ``log``
# (a downgrade to 0002): the late-window-only refresh of revision 0001.
def refresh_sql(log: bool) -> str:
    return f"""
    CREATE OR REPLACE FUNCTION pgpulse_refresh_tiers(late interval, raw_keep interval,
        keep_5m interval, at timestamptz DEFAULT now())
    RETURNS TABLE (relation text, buckets bigint)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        raw_floor timestamptz := date_bin(INTERVAL '1 hour', at - raw_keep, {EPOCH}) + INTERVAL '1 hour';
        floor_5m timestamptz := date_bin(INTERVAL '1 hour', at - keep_5m, {EPOCH}) + INTERVAL '1 hour';
        target_5m timestamptz := date_bin(INTERVAL '5 minutes', at, {EPOCH});
        target_1h timestamptz := date_bin(INTERVAL '1 hour', at, {EPOCH});
        since timestamptz;
        r5 tstzmultirange;
        r1 tstzmultirange;
        rg tstzrange;
        n bigint;
        k bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('pgpulse_refresh_tiers'));
        {"".join(_family_block(f, log) for f in RAW_TABLES)}
    END $$
"""


# Statement-level, with a transition table: one scan of the statement's rows, and
# only rows older than the 5m watermark are recorded (on-time ingest records nothing).
# One log row per hour the late rows fall in (their earliest and latest time there),
# so a statement with a few scattered old rows (2 hours, 2 days and 6 days back) makes
# the next run rebuild those hours, not the days between them.
LOG_LATE_WRITES = f"""
    CREATE FUNCTION pgpulse_log_late_writes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    DECLARE
        mark timestamptz := pgpulse_watermark(TG_TABLE_NAME || '_5m');
    BEGIN
        INSERT INTO pgpulse_invalidations (relation, lo, hi)
        SELECT TG_TABLE_NAME, min(n.time), max(n.time) FROM pgpulse_new_rows n
        WHERE n.time < mark
        GROUP BY date_bin(INTERVAL '1 hour', n.time, {EPOCH});
        RETURN NULL;
    END $$
"""


def portable_upgrade() -> None:
    op.execute(
        """
        CREATE TABLE pgpulse_invalidations (
            relation text NOT NULL CHECK (relation IN ('samples', 'system_metrics')),
            lo timestamptz NOT NULL,
            hi timestamptz NOT NULL,
            logged_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("ALTER TABLE pgpulse_watermarks ADD COLUMN previous timestamptz")
    op.execute("UPDATE pgpulse_watermarks SET previous = watermark")
    op.execute(refresh_sql(log=True))
    op.execute(LOG_LATE_WRITES)
    for table in RAW_TABLES.values():
        op.execute(
            f"CREATE TRIGGER {table}_log_late_writes AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS pgpulse_new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION pgpulse_log_late_writes()"
        )
    op.execute("REVOKE ALL ON FUNCTION pgpulse_log_late_writes FROM PUBLIC")
    op.execute("GRANT SELECT ON pgpulse_invalidations TO pgpulse_writer")


def portable_downgrade() -> None:
    for table in RAW_TABLES.values():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_log_late_writes ON {table}")
    op.execute("DROP FUNCTION IF EXISTS pgpulse_log_late_writes()")
    op.execute(refresh_sql(log=False))
    op.execute("ALTER TABLE pgpulse_watermarks DROP COLUMN IF EXISTS previous")
    op.execute("DROP TABLE IF EXISTS pgpulse_invalidations")


# -- timescale ---------------------------------------------------------------------

# Same checks and meta as revision 0001's; only the refresh windows change. A window
# starts a day inside the retention of what it reads (never less than 0001's
# late-window reach), so it covers every write the retention keeps, and never a
# dropped chunk. TimescaleDB re-materialises only the invalidated buckets of a
# window, so a wide window costs nothing where nothing changed.
TIMESCALE_CONFIGURE = """
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
    END $$
"""


def upgrade() -> None:
    if engine() == "timescale":
        # The policies are remade from settings by `pgpulse migrate` right after.
        op.execute(TIMESCALE_CONFIGURE)
    else:
        portable_upgrade()


def downgrade() -> None:
    if engine() == "portable":
        portable_downgrade()
