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
* :mod:`etl.load`      one batch into PostgreSQL in one transaction
* :mod:`etl.runs`      a run: advisory lock, batch loop, the run's record
* :mod:`etl.replay`    sending rejects through again
* :mod:`etl.service`   the ETL as one part: settings + source, built once
* :mod:`etl.schedule`  the scheduled run of ``pgpulse up`` / ``pgpulse scheduler``

Its tables are written by the store: :mod:`pgpulse.store.readings`
(``reading_analytics``, and the keyset pages of ``GET /api/reading``) and
:mod:`pgpulse.store.etl_runs` (``etl_runs``, ``etl_rejects``). Nothing here needs
Flask: each composition root builds one :class:`etl.service.EtlService`: the CLI
(``pgpulse etl``), the scheduler, and the proxy (``create_app``, for its HTTP API
in :mod:`proxy.api.sync`). docs/etl.md describes the behaviour.
"""
