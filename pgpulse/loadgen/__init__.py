"""The load generator behind ``pgpulse loadgen``: traffic for the demo app and ingest
payloads in each protocol, for demos and benchmarks.

``schedule`` is the pure logic (rates, patterns, weighted endpoints, the tally) on an
injected clock and sender; ``payloads`` builds ingest requests per protocol;
``sender`` sends over HTTP. It talks to pgpulse only through its HTTP API.
"""
