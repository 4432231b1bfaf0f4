"""The verbs of the ``pgpulse`` command; each module registers one or more."""

from pgpulse.commands import migrate, status, tiers, up

# Order is the order of `pgpulse --help`.
ALL = [up, migrate, status, tiers]
