"""Container mode: the probes read a host's /proc, /sys and root mounted elsewhere.

The host here is a fake one: directories of files written by tests/fake_host.py,
as the kernel would show them (the way prometheus client_python tests its process
collector), so every number below is known exactly. psutil itself is not patched:
the probes hand it the source's /proc.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from fake_host import Clock, FakeHost

from collector.settings import load_collector
from collector.snapshot import Sampler
from collector.source import HostSource

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path).write()


def two_samples(host: FakeHost, change, top_n: int = 3, elapsed: float = 10.0) -> dict:
    clock = Clock()
    sampler = Sampler(host.source(), top_n=top_n, monotonic=clock)
    sampler.sample()
    change(host)
    host.write()
    clock.advance(elapsed)
    return sampler.sample()[1]


def test_cpu_load_memory_swap(host):
    def change(h):
        h.cpu.update(user=1300, system=600, idle=8500, iowait=350, steal=150)  # +1000 ticks
        h.ctxt += 10_000
        h.pswpin += 10  # pages of 4 KiB

    doc = two_samples(host, change)
    cpu = doc["cpu"]
    assert cpu["count"] == 2
    assert (cpu["percent"], cpu["user"], cpu["system"], cpu["iowait"], cpu["steal"]) == (45.0, 30.0, 10.0, 5.0, 5.0)
    assert cpu["ctx_switches_per_s"] == 1000.0
    assert len(cpu["per_core"]) == 2 and cpu["per_core"][1]["percent"] == 45.0
    assert doc["load"] == {"load1": 0.5, "load5": 0.4, "load15": 0.3}
    mem = doc["memory"]
    assert mem["total"] == 8_000_000 * 1024
    assert mem["available"] == 6_000_000 * 1024
    assert mem["percent"] == 25.0
    assert doc["swap"]["percent"] == 25.0
    assert doc["swap"]["in_bytes_per_s"] == 10 * 4096 / 10
    assert doc["swap"]["out_bytes_per_s"] == 0.0


def test_disk_rates_per_device_and_totals(host):
    def change(h):
        h.disks["sda"][0] += 20_000  # sectors of 512 bytes
        h.disks["sdb"][1] += 4_000
        h.disks["dm-0"][0] += 20_000  # the same reads, seen again through device-mapper
        h.disks["sda"][2] += 2_500  # ms busy in 10 s

    disk = two_samples(host, change)["disk"]
    assert set(disk["devices"]) == {"sda", "sdb", "dm-0"}  # no loop device, no partition
    assert disk["devices"]["sda"]["read_bytes_per_s"] == 20_000 * 512 / 10
    assert disk["devices"]["sda"]["busy_percent"] == 25.0
    assert disk["devices"]["sdb"]["write_bytes_per_s"] == 4_000 * 512 / 10
    # dm-0 re-counts sda's I/O: listed, not added to the totals.
    assert disk["read_bytes_per_s"] == 20_000 * 512 / 10
    assert disk["write_bytes_per_s"] == 4_000 * 512 / 10


def test_network_of_the_host_namespace(host):
    def change(h):
        h.nics["eth0"][0] += 1_000_000
        h.nics["eth0"][4] += 500_000
        h.nics["eth0"][3] += 5
        h.nics["lo"][0] += 9_000_000
        h.nics["veth1234"][0] += 7_000_000

    net = two_samples(host, change)["network"]
    # PID 1's /proc/1/net/dev, not the reader's own /proc/net/dev.
    assert set(net["interfaces"]) == {"lo", "eth0", "veth1234"}
    assert net["interfaces"]["lo"]["rx_bytes_per_s"] == 900_000.0
    assert net["interfaces"]["eth0"]["rx_drops_per_s"] == 0.5
    # Loopback and veth pairs are left out of the totals.
    assert net["rx_bytes_per_s"] == 100_000.0
    assert net["tx_bytes_per_s"] == 50_000.0


def test_counter_going_backwards_in_proc_gives_null_then_recovers(host):
    clock = Clock()
    sampler = Sampler(host.source(), top_n=0, monotonic=clock)
    sampler.sample()
    host.disks["sda"][0] = 10  # a re-created device: its counters started over
    host.nics["eth0"][0] = 100
    host.write()
    clock.advance(10)
    _, doc = sampler.sample()
    assert doc["disk"]["devices"]["sda"]["read_bytes_per_s"] is None
    assert doc["network"]["interfaces"]["eth0"]["rx_bytes_per_s"] is None
    assert doc["network"]["rx_bytes_per_s"] is None  # no other physical interface
    host.disks["sda"][0] = 1010
    host.nics["eth0"][0] = 10_100
    host.write()
    clock.advance(10)
    _, doc = sampler.sample()
    assert doc["disk"]["devices"]["sda"]["read_bytes_per_s"] == 1000 * 512 / 10
    assert doc["network"]["rx_bytes_per_s"] == 1000.0


def test_filesystems_of_the_host_root(host):
    doc = two_samples(host, lambda h: None)
    fs = doc["filesystems"]
    # The host's root, mounted at <tmp>/root here, is reported as "/".
    assert set(fs) == {"/", "/data", "/mnt/with space"}
    assert fs["/"]["device"] == "/dev/sda2" and fs["/"]["fstype"] == "ext4"
    assert fs["/data"]["fstype"] == "ext4"
    st = os.statvfs(host.root)
    assert fs["/"]["total"] == st.f_blocks * st.f_frsize
    assert 0 <= fs["/"]["percent"] <= 100
    assert fs["/"]["inodes_total"] == st.f_files


def test_processes_states_and_top(host):
    def change(h):
        h.procs[1].utime += 300  # postgres: 3 s of CPU in 10 s
        h.procs[3].stime += 100  # worker: 1 s

    doc = two_samples(host, change, top_n=2)
    procs = doc["processes"]
    assert procs["count"] == 4
    assert (procs["running"], procs["blocked"], procs["threads"]) == (3, 1, 345)
    assert procs["states"] == {"disk_sleep": 1, "running": 1, "sleeping": 1, "zombie": 1}
    by_cpu = doc["top"]["by_cpu"]
    assert [(p["pid"], p["name"], p["cpu_percent"]) for p in by_cpu] == [(42, "postgres", 30.0), (44, "worker", 10.0)]
    by_memory = doc["top"]["by_memory"]
    assert by_memory[0]["pid"] == 42
    assert by_memory[0]["memory_rss"] == 50_000 * PAGE
    assert by_memory[0]["memory_percent"] == pytest.approx(50_000 * PAGE / (8_000_000 * 1024) * 100, abs=0.01)
    assert by_memory[0]["username"] == "root"


def test_process_that_exits_between_samples(host):
    clock = Clock()
    sampler = Sampler(host.source(), top_n=5, monotonic=clock)
    sampler.sample()
    host.remove_process(44)
    clock.advance(10)
    _, doc = sampler.sample()
    assert doc["processes"]["count"] == 3
    assert 44 not in [p["pid"] for p in doc["top"]["by_memory"]]


def test_sensors_and_uptime(host):
    doc = two_samples(host, lambda h: None)
    assert doc["temperatures"] == {
        "coretemp": [{"label": "Package id 0", "current": 45.0, "high": 80.0, "critical": 100.0}]
    }
    assert doc["fans"] == {"coretemp": [{"label": "cpu_fan", "rpm": 1200}]}
    assert doc["system"]["boot_time"] == "2023-11-14T22:13:20+00:00"
    assert doc["system"]["uptime_s"] > 0


def test_host_name_from_the_host_root(host):
    assert host.source().hostname() == "fake-host"
    # Not in container mode: this machine's own name.
    assert host.source(container=False).hostname() != "fake-host"


def test_mounts_fall_back_to_own_table_beneath_the_root(host):
    # Without the host's PID 1 (no pid: host), the container's own mount table
    # still lists the host's mounts beneath the root path (rslave propagation).
    root = str(host.root)
    (host.proc / "1" / "mounts").unlink()
    (host.proc / "self" / "mounts").write_text(
        f"overlay / overlay rw 0 0\n/dev/sda2 {root} ext4 rw 0 0\n"
        f"/dev/sdb1 {root}/data ext4 rw 0 0\ntmpfs {root}/run tmpfs rw 0 0\n"
    )
    _, doc = Sampler(host.source(), top_n=0).sample()
    assert set(doc["filesystems"]) == {"/", "/data"}
    assert doc["filesystems"]["/"]["device"] == "/dev/sda2"


def test_settings_make_a_container_source(host):
    settings = load_collector({
        "COLLECTOR_PROC_PATH": str(host.proc),
        "COLLECTOR_SYS_PATH": str(host.sys),
        "COLLECTOR_ROOT_PATH": str(host.root),
    })
    from collector.service import host_of, source_of

    source = source_of(settings)
    assert source == HostSource(host.proc, host.sys, host.root) and source.container
    assert host_of(settings) == "fake-host"
    assert host_of(load_collector({"COLLECTOR_HOSTNAME": "db-1", "COLLECTOR_ROOT_PATH": str(host.root)})) == "db-1"


def test_psutil_is_left_reading_the_real_proc(host):
    Sampler(host.source(), top_n=1).sample()
    assert psutil.PROCFS_PATH == "/proc"
    assert Path("/proc/stat").exists() and psutil.cpu_count() >= 1
