"""An instrumented demo web app for pgpulse (``make demo``): a small Flask shop whose
requests are measured with the OpenTelemetry SDK and exported over OTLP/HTTP to
pgpulse's ``/v1/metrics``. It is a client of pgpulse like any other application and
imports nothing of pgpulse."""
