"""A fake host for the collector's probes: /proc, /sys and a root directory of files
this helper writes, like the kernel would. Tests change the counters in
``FakeHost`` and call ``write()`` again between two samples."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from collector.source import HostSource

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

HOST_MOUNTS = """\
/dev/sda2 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
sysfs /sys sysfs rw,nosuid 0 0
tmpfs /run tmpfs rw,nosuid 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw 0 0
/dev/sdb1 /data ext4 rw,relatime 0 0
/dev/sda2 /srv/bind ext4 rw,relatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
/dev/sdc1 /mnt/with\\040space xfs rw 0 0
/dev/sda2 /etc/hosts ext4 rw 0 0
"""
# The container's own table: never read while the host's PID 1 table is readable.
CONTAINER_MOUNTS = "overlay / overlay rw 0 0\nproc /proc proc rw 0 0\n"


@dataclasses.dataclass
class Proc:
    pid: int
    name: str
    state: str = "S"
    utime: int = 0  # clock ticks
    stime: int = 0
    rss_pages: int = 100
    uid: int = 0


@dataclasses.dataclass
class FakeHost:
    base: Path
    cpu: dict = dataclasses.field(default_factory=lambda: dict(
        user=1000, nice=0, system=500, idle=8000, iowait=300, irq=0, softirq=100, steal=100, guest=0, guest_nice=0))
    cores: int = 2
    ctxt: int = 50_000
    intr: int = 20_000
    softirq: int = 10_000
    btime: int = 1_700_000_000
    procs_running: int = 3
    procs_blocked: int = 1
    loadavg: str = "0.50 0.40 0.30 2/345 12345"
    mem_total_kb: int = 8_000_000
    mem_free_kb: int = 1_000_000
    mem_available_kb: int = 6_000_000
    swap_total_kb: int = 2_000_000
    swap_free_kb: int = 1_500_000
    pswpin: int = 100
    pswpout: int = 200
    # sectors read, sectors written, ms busy
    disks: dict = dataclasses.field(default_factory=lambda: {
        "sda": [10_000, 20_000, 1_000], "sdb": [5_000, 5_000, 500], "dm-0": [9_000, 9_000, 900],
        "loop0": [1, 1, 1]})
    # rx bytes, rx packets, rx errs, rx drop, tx bytes, tx packets, tx errs, tx drop
    nics: dict = dataclasses.field(default_factory=lambda: {
        "lo": [1_000_000, 1000, 0, 0, 1_000_000, 1000, 0, 0],
        "eth0": [5_000_000, 5000, 1, 2, 3_000_000, 4000, 0, 1],
        "veth1234": [700_000, 700, 0, 0, 700_000, 700, 0, 0]})
    procs: list = dataclasses.field(default_factory=lambda: [
        Proc(1, "init", "S", 500, 300, 2000),
        Proc(42, "postgres", "R", 1000, 200, 50_000, 0),
        Proc(43, "defunct", "Z", 10, 0, 0),
        Proc(44, "worker", "D", 300, 300, 10_000),
    ])
    hostname: str = "fake-host"
    host_mounts: str = HOST_MOUNTS

    @property
    def proc(self) -> Path:
        return self.base / "proc"

    @property
    def sys(self) -> Path:
        return self.base / "sys"

    @property
    def root(self) -> Path:
        return self.base / "root"

    def source(self, container: bool = True) -> HostSource:
        return HostSource(self.proc, self.sys, self.root if container else Path("/"))

    def _put(self, rel: str, text: str, under: Path | None = None) -> None:
        path = (under or self.base) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def write(self) -> FakeHost:
        c = self.cpu
        total = " ".join(str(c[f]) for f in CPU_FIELDS)
        per_core = "".join(
            f"cpu{i} " + " ".join(str(c[f] // self.cores) for f in CPU_FIELDS) + "\n" for i in range(self.cores)
        )
        self._put("proc/stat", (
            f"cpu  {total}\n{per_core}"
            f"intr {self.intr} 0 0 0\nctxt {self.ctxt}\nbtime {self.btime}\nprocesses 9999\n"
            f"procs_running {self.procs_running}\nprocs_blocked {self.procs_blocked}\n"
            f"softirq {self.softirq} 0 0 0\n"
        ))
        self._put("proc/loadavg", self.loadavg + "\n")
        self._put("proc/meminfo", (
            f"MemTotal: {self.mem_total_kb} kB\nMemFree: {self.mem_free_kb} kB\n"
            f"MemAvailable: {self.mem_available_kb} kB\nBuffers: 100000 kB\nCached: 2000000 kB\n"
            f"SwapCached: 0 kB\nActive: 3000000 kB\nInactive: 1000000 kB\nShmem: 50000 kB\n"
            f"Slab: 200000 kB\nSReclaimable: 100000 kB\n"
            f"SwapTotal: {self.swap_total_kb} kB\nSwapFree: {self.swap_free_kb} kB\n"
        ))
        self._put("proc/vmstat", f"nr_free_pages 1000\npswpin {self.pswpin}\npswpout {self.pswpout}\n")
        disk_lines = []
        for i, (name, (rsec, wsec, busy)) in enumerate(self.disks.items()):
            disk_lines.append(f"   8 {i * 16} {name} 100 0 {rsec} 50 200 0 {wsec} 80 0 {busy} 130")
            if name == "sda":  # a partition line: 7 fields, never reported on its own
                disk_lines.append(f"   8 1 sda1 90 {rsec} 190 {wsec}")
        self._put("proc/diskstats", "\n".join(disk_lines) + "\n")
        header = ("Inter-|   Receive                                                |  Transmit\n"
                  " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n")
        nic_lines = "".join(
            f"{name:>6}: {v[0]} {v[1]} {v[2]} {v[3]} 0 0 0 0 {v[4]} {v[5]} {v[6]} {v[7]} 0 0 0 0\n"
            for name, v in self.nics.items()
        )
        # The host's network namespace is PID 1's; /proc/net is the reader's own.
        self._put("proc/1/net/dev", header + nic_lines)
        self._put("proc/net/dev", header + "  eth0: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n")
        self._put("proc/1/mounts", self.host_mounts)
        self._put("proc/self/mounts", CONTAINER_MOUNTS)
        for p in self.procs:
            rest = [p.state, "0", str(p.pid), str(p.pid), "0", "-1", "4194560", "0", "0", "0", "0",
                    str(p.utime), str(p.stime), "0", "0", "20", "0", "1", "0", "100", "1000000",
                    str(p.rss_pages)] + ["0"] * 30
            self._put(f"proc/{p.pid}/stat", f"{p.pid} ({p.name}) " + " ".join(rest) + "\n")
            self._put(f"proc/{p.pid}/statm", f"{p.rss_pages * 2} {p.rss_pages} 10 1 0 {p.rss_pages} 0\n")
            self._put(f"proc/{p.pid}/status", f"Name:\t{p.name}\nUid:\t{p.uid}\t{p.uid}\t{p.uid}\t{p.uid}\n")
        hw = "sys/class/hwmon/hwmon0/"
        self._put(hw + "name", "coretemp\n")
        self._put(hw + "temp1_input", "45000\n")
        self._put(hw + "temp1_label", "Package id 0\n")
        self._put(hw + "temp1_max", "80000\n")
        self._put(hw + "temp1_crit", "100000\n")
        self._put(hw + "fan1_input", "1200\n")
        self._put(hw + "fan1_label", "cpu_fan\n")
        self._put("root/etc/hostname", self.hostname + "\n")
        self._put("root/etc/hosts", "127.0.0.1 localhost\n")  # a bind-mounted file, not a filesystem
        for mp in ("data", "srv/bind", "mnt/with space"):
            (self.root / mp).mkdir(parents=True, exist_ok=True)
        return self

    def remove_process(self, pid: int) -> None:
        self.procs = [p for p in self.procs if p.pid != pid]
        for f in (self.proc / str(pid)).iterdir():
            f.unlink()
        os.rmdir(self.proc / str(pid))


class Clock:
    """A monotonic clock the test moves by hand, so rates are exact."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
