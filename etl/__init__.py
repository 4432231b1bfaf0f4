"""The MongoDB -> PostgreSQL ETL of readings.

Reading documents that another service writes into MongoDB with
``status: "ingested"`` are claimed, transformed and loaded into
``reading_analytics`` exactly once, then marked ``processed``; documents that
cannot be transformed become rejects that can be listed and replayed.

One concept per module:

* :mod:`etl.settings`  what the ETL reads from the environment
* :mod:`etl.source`    MongoDB: claims with leases, and the state marks
* :mod:`etl.bsonjson`  BSON values -> JSON, without loss of meaning
* :mod:`etl.transform` a document -> a row (time, source, payload) and samples
* :mod:`etl.load`      one batch into PostgreSQL in one transaction (COPY)
* :mod:`etl.runs`      a run: advisory lock, batch loop, the etl_runs record
* :mod:`etl.replay`    listing rejects and sending them through again
* :mod:`etl.readings`  reading loaded readings back (keyset pages)
* :mod:`etl.schedule`  the scheduled run of ``pgpulse up``
* :mod:`proxy.api.sync`       the HTTP API (/api/sync/..., /api/reading)

Everything but ``api`` works without Flask: the CLI (``pgpulse etl``) and the
scheduler use it directly. docs/etl.md describes the behaviour.
"""
