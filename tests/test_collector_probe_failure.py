"""A probe that fails (missing file, malformed content, no sensors) is skipped with
one warning and never stops the agent; it is reported again once it has worked in
between. The host is a fake one (tests/fake_host.py)."""

from __future__ import annotations

import logging

import pytest
from fake_host import Clock, FakeHost

from collector.snapshot import Sampler
from collector.source import HostSource


@pytest.fixture
def host(tmp_path) -> FakeHost:
    return FakeHost(tmp_path).write()


def warnings_about(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_missing_file_one_warning_then_recovery(host, caplog):
    caplog.set_level(logging.INFO, logger="collector")
    clock = Clock()
    sampler = Sampler(host.source(), top_n=0, monotonic=clock)
    (host.proc / "loadavg").unlink()
    docs = []
    for _ in range(3):
        clock.advance(10)
        docs.append(sampler.sample()[1])
    assert len(warnings_about(caplog, "probe load skipped")) == 1
    for doc in docs:
        assert "load" not in doc
        assert doc["collector"]["skipped"] == ["load"]
        assert doc["processes"]["count"] == 4  # the rest of the snapshot is intact
        assert "threads" not in doc["processes"]
    host.write()  # the file is back
    clock.advance(10)
    doc = sampler.sample()[1]
    assert doc["load"]["load1"] == 0.5 and doc["collector"]["skipped"] == []
    assert any("probe load works again" in r.getMessage() for r in caplog.records)
    (host.proc / "loadavg").unlink()  # fails again: warned again, once
    for _ in range(2):
        clock.advance(10)
        sampler.sample()
    assert len(warnings_about(caplog, "probe load skipped")) == 2


def test_malformed_kernel_file_is_skipped(host, caplog):
    (host.proc / "meminfo").write_text("this is not meminfo\n")
    sampler = Sampler(host.source(), top_n=3)
    sampler.sample()
    doc = sampler.sample()[1]
    assert "memory" not in doc and "memory" in doc["collector"]["skipped"]
    assert len(warnings_about(caplog, "probe memory skipped")) == 1
    # The top-N still lists processes, without a memory share.
    assert doc["top"]["by_memory"][0]["memory_percent"] is None


def test_no_sensors_is_one_warning_each(host, caplog):
    for f in (host.sys / "class" / "hwmon" / "hwmon0").iterdir():
        f.unlink()
    sampler = Sampler(host.source(), top_n=0)
    for _ in range(3):
        doc = sampler.sample()[1]
    assert doc["collector"]["skipped"] == ["temperatures", "fans"]
    assert len(warnings_about(caplog, "probe temperatures skipped")) == 1
    assert len(warnings_about(caplog, "probe fans skipped")) == 1


def test_unreadable_mount_costs_that_mount_only(host, caplog):
    host.host_mounts += "/dev/sdd1 /gone ext4 rw 0 0\n"  # its directory is not there
    host.write()
    sampler = Sampler(host.source(), top_n=0)
    for _ in range(3):
        doc = sampler.sample()[1]
    assert set(doc["filesystems"]) == {"/", "/data", "/mnt/with space"}
    assert len(warnings_about(caplog, "filesystem /gone skipped")) == 1


def test_no_proc_at_all_still_gives_a_document(tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    sampler = Sampler(HostSource(empty, empty, empty), top_n=5)
    sampler.sample()
    doc = sampler.sample()[1]
    assert doc["schema"] == 1
    assert set(doc["collector"]["skipped"]) >= {"cpu", "load", "memory", "swap", "disk", "network", "processes"}
    assert len(warnings_about(caplog, "probe cpu skipped")) == 1
