"""The field's wire protocols, decoded into the store's :class:`~pgpulse.store.batch.Batch`.

One module per protocol (``remote_write``, ``otlp``, ``influx``): bytes (already
decompressed) in, a batch and its per-item refusals out. Writing is the store's
(:func:`pgpulse.store.samples.write_batch`) and HTTP is the proxy's (the views in
``proxy/api/`` read the request, call the decoder and map statuses), so the rules of
names, limits, types and duplicates are the same whoever sends. Decoders import only
the core, so the CLI or a benchmark can use them without Flask.
"""
