"""The pgpulse proxy: HTTP APIs for ingest, query, export, discovery and operations.

``create_app`` is imported on first use, so that ``proxy.settings`` can be read
without importing Flask and prometheus_client (whose multiprocess mode must be set
up before its first import).
"""

from __future__ import annotations

from typing import Any

__all__ = ["close_app", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from proxy import app

        return getattr(app, name)
    raise AttributeError(f"module 'proxy' has no attribute {name!r}")
