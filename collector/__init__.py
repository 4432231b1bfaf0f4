"""The pgpulse host collector: psutil probes -> one JSON snapshot per interval ->
an on-disk spool -> a sink (PostgreSQL or the proxy's HTTP ingest API).

See docs/collector.md and docs/metrics.md."""
