"""The store: every write to pgpulse's tables, and the reads that are not tier-aware.

One module per table family, each the only writer of its tables:

* :mod:`pgpulse.store.errors`      the domain errors every writer raises
* :mod:`pgpulse.store.keys`        ``api_keys``: make, list, revoke and verify API keys
* :mod:`pgpulse.store.batch`       the column-shaped batch of samples every producer hands in
* :mod:`pgpulse.store.series`      ``series``: the rules of a series, the limits, the cache,
                                   and the one place that creates series
* :mod:`pgpulse.store.samples`     ``samples``: binary COPY of a resolved batch, last write
                                   wins per (series, time)
* :mod:`pgpulse.store.staleness`   ``stale_markers``: where series went stale (never values),
                                   pruned past the raw retention
* :mod:`pgpulse.store.metadata`    ``metric_metadata``: type, help and unit per metric family
* :mod:`pgpulse.store.snapshots`   ``system_metrics``: host snapshots, one rule set
* :mod:`pgpulse.store.idempotency` ``ingest_idempotency``: answers of retried batches
* :mod:`pgpulse.store.readings`    ``reading_analytics``: the ETL's readings, and their pages
* :mod:`pgpulse.store.etl_runs`    ``etl_runs``, ``etl_rejects``: ETL runs and rejects
* :mod:`pgpulse.store.audit`       ``audit_log``: administrative acts, appended only, and
                                   their listing

Reads that are not tier-aware, one module per thing read:

* :mod:`pgpulse.store.series_reads` the series catalogue: selector matches, discovery,
  cardinality
* :mod:`pgpulse.store.host_reads`   hosts that sent snapshots, and when
* :mod:`pgpulse.store.tier_reads`   a rolled-up tier's rows over a range, planned for it
  (the tier-aware reads of :mod:`pgpulse.reads` build on it)
* :mod:`pgpulse.store.exports`      raw samples and snapshots streamed out

Callers (the collector's postgres sink, the proxy's views, the ETL, the CLI) pass
in a connection and own the transaction; the store never commits. Errors are
domain errors (:mod:`pgpulse.store.errors`), never HTTP ones: the proxy maps them
to statuses, the ETL to rejects.
"""
