"""pgpulse: a team's telemetry in PostgreSQL (TimescaleDB where installed)."""

__version__ = "0.1.0"
