"""The store: every write to pgpulse's tables, and the reads that are not tier-aware.

One module per table family, each the only writer of its tables:

* :mod:`pgpulse.store.errors`      the domain errors every writer raises
* :mod:`pgpulse.store.keys`        ``api_keys``: make, list, revoke and verify API keys

Reads that are not tier-aware, one module per thing read:

* :mod:`pgpulse.store.series_reads` the series catalogue: selector matches, discovery,
  cardinality
* :mod:`pgpulse.store.host_reads`   hosts that sent snapshots, and when
* :mod:`pgpulse.store.exports`      raw samples and snapshots streamed out

Callers (the collector's postgres sink, the proxy's views, the ETL, the CLI) pass
in a connection and own the transaction; the store never commits. Errors are
domain errors (:mod:`pgpulse.store.errors`), never HTTP ones: the proxy maps them
to statuses, the ETL to rejects.
"""
