"""Decoders of the field's ingest protocols into the store's Batch, one module each.

Each module is pure: bytes (already decompressed) in, a
:class:`pgpulse.store.batch.Batch` and its per-item refusals out. Writing is the
store's (:func:`pgpulse.store.samples.write_batch`) and HTTP is the proxy's, so the
rules of names, limits, types and duplicates are the same whoever sends.
"""
