"""The field's wire protocols, decoded into the store's :class:`~pgpulse.store.batch.Batch`.

One module per protocol. Each turns a request body into a batch (and says which
parts it refused, in the protocol's own terms); the proxy's views own HTTP, the
store owns every write, so names, limits, types and duplicates follow one rule
whichever protocol carried the data.
"""
