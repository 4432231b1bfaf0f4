"""The verbs of the ``pgpulse`` command; each module registers one or more."""

from pgpulse.commands import (
    audit,
    backup,
    collect,
    config,
    etl,
    keys,
    loadgen,
    migrate,
    proxy,
    scheduler,
    status,
    tenants,
    tiers,
    up,
)

# Order is the order of `pgpulse --help`.
ALL = [up, collect, migrate, status, tiers, config, backup, proxy, scheduler, etl, keys, tenants, audit, loadgen]
