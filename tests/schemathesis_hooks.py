"""Hooks of the schemathesis runs in tests/test_schemathesis.py (SCHEMATHESIS_HOOKS).

Protocol bodies in binary media types (remote write's ``application/x-protobuf``)
are sent as the bytes schemathesis generates for a binary string, as it does for
``application/octet-stream``: random bytes, which the endpoints must refuse with a
4xx, never a 5xx.
"""

import schemathesis

schemathesis.serializer.alias(["application/x-protobuf"], "application/octet-stream")
