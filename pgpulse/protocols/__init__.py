"""The field's wire protocols, decoded into the store's :class:`~pgpulse.store.batch.Batch`.

One module per protocol (``remote_write``, ...); the HTTP views in ``proxy/api/`` read
the request, call the decoder and hand the batch to the store. Decoders import only
the core, so the CLI or a benchmark can use them without Flask.
"""
