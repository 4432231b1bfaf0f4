"""The machine-wide probes: CPU, load, memory, swap, disk I/O, network, uptime.

Each probe is an object with a ``name`` and ``read(ctx)`` returning the sections it
contributes to the snapshot document (docs/metrics.md). A probe raises one of
:data:`PROBE_ERRORS` when its source is missing or unreadable; the sampler then
leaves its sections out. Probes read through psutil with ``ctx.source.procfs()``
in force, so psutil reads the host's /proc wherever it is mounted.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import psutil

from collector.rates import Rates, total
from collector.source import HostSource, read_text


class ProbeUnavailable(LookupError):
    """The platform has nothing for this probe (no sensors, no such counters)."""


# What a probe may fail with and be skipped for: a missing or unreadable file
# (OSError: permission, absent sensor), psutil's own errors, malformed kernel
# text (ValueError, IndexError, KeyError), psutil's RuntimeError for a /proc
# file without the expected line, or nothing to read on this platform. Anything
# else is a bug and is not swallowed.
PROBE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    psutil.Error,
    ValueError,
    IndexError,
    KeyError,
    RuntimeError,
    ProbeUnavailable,
)


@dataclasses.dataclass
class SampleContext:
    """What every probe of one sample shares."""

    source: HostSource
    rates: Rates
    elapsed: float | None  # seconds since the previous sample; None for the first
    at: datetime
    memory_total: int | None = None  # filled by the memory probe, used for top-N


def r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# -- CPU ----------------------------------------------------------------------------

# Shares reported per CPU state when the OS has them (Linux has them all).
CPU_STATES = ("user", "nice", "system", "iowait", "irq", "softirq", "steal")
CORE_STATES = ("user", "system", "iowait", "steal")


def cpu_shares(before: Any, after: Any) -> dict[str, float] | None:
    """Percent of time spent busy and in each state between two cpu_times readings.

    Busy time is all but idle and iowait, as psutil and htop count it; guest time
    is already inside user/nice. None when the total went backwards (a reboot):
    the next interval starts over. A single state may dip slightly on NO_HZ kernels
    (iowait is known to): that dip counts as zero, like psutil does.
    """
    deltas = {f: max(0.0, getattr(after, f) - getattr(before, f)) for f in after._fields}
    if sum(after) < sum(before):
        return None
    whole = sum(deltas.values()) - deltas.get("guest", 0.0) - deltas.get("guest_nice", 0.0)
    if whole <= 0:
        return None
    busy = whole - deltas["idle"] - deltas.get("iowait", 0.0)
    shares = {"percent": max(0.0, busy) / whole * 100}
    for state in CPU_STATES:
        if state in deltas:
            shares[state] = deltas[state] / whole * 100
    return shares


class CpuProbe:
    name = "cpu"

    def __init__(self) -> None:
        self._total = None
        self._cores: list = []

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        with ctx.source.procfs():
            whole = psutil.cpu_times()
            cores = psutil.cpu_times(percpu=True)
            stats = psutil.cpu_stats()
        section: dict[str, Any] = {"count": len(cores)}
        shares = cpu_shares(self._total, whole) if self._total is not None else None
        section["percent"] = r(shares["percent"]) if shares else None
        for state in CPU_STATES:
            if state in whole._fields:
                section[state] = r(shares[state]) if shares else None
        rate = ctx.rates.rate
        section["ctx_switches_per_s"] = r(rate(("cpu", "ctx"), stats.ctx_switches), 1)
        section["interrupts_per_s"] = r(rate(("cpu", "intr"), stats.interrupts), 1)
        section["soft_interrupts_per_s"] = r(rate(("cpu", "softirq"), stats.soft_interrupts), 1)
        per_core = []
        for i, now in enumerate(cores):
            before = self._cores[i] if i < len(self._cores) else None
            core_shares = cpu_shares(before, now) if before is not None else None
            core = {"percent": r(core_shares["percent"]) if core_shares else None}
            for state in CORE_STATES:
                if state in now._fields:
                    core[state] = r(core_shares[state]) if core_shares else None
            per_core.append(core)
        section["per_core"] = per_core
        self._total, self._cores = whole, cores
        return {"cpu": section}


# -- load ---------------------------------------------------------------------------


class LoadProbe:
    name = "load"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        # psutil.getloadavg() calls getloadavg(3), which always reads this
        # machine's /proc: read the source's file instead.
        fields = read_text(ctx.source.proc_file("loadavg")).split()
        load1, load5, load15 = (float(x) for x in fields[:3])
        return {"load": {"load1": load1, "load5": load5, "load15": load15}}


# -- memory and swap ----------------------------------------------------------------


class MemoryProbe:
    name = "memory"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        with ctx.source.procfs():
            vm = psutil.virtual_memory()
        ctx.memory_total = vm.total
        section = {"total": vm.total, "available": vm.available, "used": vm.used, "free": vm.free,
                   "percent": r(vm.percent)}
        for extra in ("buffers", "cached", "shared"):
            if hasattr(vm, extra):
                section[extra] = getattr(vm, extra)
        return {"memory": section}


class SwapProbe:
    name = "swap"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        with ctx.source.procfs():
            sw = psutil.swap_memory()
        return {
            "swap": {
                "total": sw.total,
                "used": sw.used,
                "free": sw.free,
                "percent": r(sw.percent),
                "in_bytes_per_s": r(ctx.rates.rate(("swap", "in"), sw.sin), 1),
                "out_bytes_per_s": r(ctx.rates.rate(("swap", "out"), sw.sout), 1),
            }
        }


# -- disk I/O -----------------------------------------------------------------------

# RAM disks, loop devices, floppies and partitions (their disk is reported whole),
# as node_exporter leaves them out by default.
IGNORED_DISKS = re.compile(
    r"^(z?ram\d+|loop\d+|fd\d+|(h|s|v|xv)d[a-z]+\d+|nvme\d+n\d+p\d+|mmcblk\d+p\d+)$"
)
# Device-mapper and software RAID devices re-count the I/O of the disks under
# them: listed, but not added to the totals.
STACKED_DISKS = re.compile(r"^(dm-\d+|md\d+)$")

DISK_COUNTERS = (
    ("read_bytes_per_s", "read_bytes"),
    ("write_bytes_per_s", "write_bytes"),
    ("reads_per_s", "read_count"),
    ("writes_per_s", "write_count"),
)


class DiskProbe:
    name = "disk"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        stats = ctx.source.proc_file("diskstats")
        if not stats.exists():
            # psutil would fall back to this machine's fixed /sys/block: a container
            # or a test would then report a host that is not the source's.
            raise ProbeUnavailable(f"{stats} not found")
        with ctx.source.procfs():
            counters = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
        devices: dict[str, dict[str, float | None]] = {}
        for dev, c in sorted(counters.items()):
            if IGNORED_DISKS.match(dev):
                continue
            entry = {
                field: r(ctx.rates.rate(("disk", dev, attr), getattr(c, attr)), 1)
                for field, attr in DISK_COUNTERS
            }
            busy = None
            if hasattr(c, "busy_time"):  # milliseconds spent doing I/O (Linux, BSD)
                grown = ctx.rates.delta(("disk", dev, "busy"), c.busy_time)
                if grown is not None and ctx.elapsed:
                    busy = min(100.0, grown / (ctx.elapsed * 1000) * 100)
            entry["busy_percent"] = r(busy)
            devices[dev] = entry
        counted = [e for d, e in devices.items() if not STACKED_DISKS.match(d)]
        section: dict[str, Any] = {
            field: r(total(e[field] for e in counted), 1) for field, _ in DISK_COUNTERS
        }
        section["devices"] = devices
        return {"disk": section}


# -- network ------------------------------------------------------------------------

# Interfaces left out of the totals (still listed): loopback, and virtual ones
# that carry the same packets as a physical interface again (bridges, veth
# pairs, tunnels, overlay networks, traffic-shaping mirrors).
VIRTUAL_NICS = re.compile(
    r"^(lo|veth.*|docker\d*|br-.*|virbr.*|cni.*|flannel.*|cali.*|vxlan.*|tunl.*|kube-.*|ifb\d*|weave.*|lxcbr.*|podman.*)$"
)

NIC_COUNTERS = (
    ("rx_bytes_per_s", "bytes_recv"),
    ("tx_bytes_per_s", "bytes_sent"),
    ("rx_packets_per_s", "packets_recv"),
    ("tx_packets_per_s", "packets_sent"),
    ("rx_errors_per_s", "errin"),
    ("tx_errors_per_s", "errout"),
    ("rx_drops_per_s", "dropin"),
    ("tx_drops_per_s", "dropout"),
)


class NetworkProbe:
    name = "network"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        source = ctx.source
        # /proc/net is this process's network namespace. In container mode the
        # host's is the one of its PID 1; without access to it (no pid: host),
        # the container's own view is what there is.
        counters = None
        if source.container and source.proc_file("1", "net", "dev").exists():
            try:
                with source.procfs(source.proc_file("1")):
                    counters = psutil.net_io_counters(pernic=True, nowrap=False)
            except PermissionError:
                counters = None
        if counters is None:
            with source.procfs():
                counters = psutil.net_io_counters(pernic=True, nowrap=False)
        interfaces: dict[str, dict[str, float | None]] = {}
        for nic, c in sorted(counters.items()):
            interfaces[nic] = {
                field: r(ctx.rates.rate(("net", nic, attr), getattr(c, attr)), 1)
                for field, attr in NIC_COUNTERS
            }
        counted = [e for nic, e in interfaces.items() if not VIRTUAL_NICS.match(nic)]
        section: dict[str, Any] = {
            field: r(total(e[field] for e in counted), 1) for field, _ in NIC_COUNTERS
        }
        section["interfaces"] = interfaces
        return {"network": section}


# -- uptime -------------------------------------------------------------------------


class SystemProbe:
    name = "system"

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        with ctx.source.procfs():
            boot = psutil.boot_time()
        booted = datetime.fromtimestamp(boot, UTC)
        return {
            "system": {
                "boot_time": booted.isoformat(),
                "uptime_s": r((ctx.at - booted).total_seconds(), 1),
            }
        }
