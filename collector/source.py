"""Where the probes read the host from: its /proc, its /sys and its root filesystem.

On a host these are /proc, /sys and /. In a container they are the host's,
mounted elsewhere (/host/proc, /host/sys, /host), so the snapshot describes the
host rather than the container; tests point them at a directory of files they
wrote. Every probe takes a :class:`HostSource` instead of reaching for fixed paths.

psutil reads /proc through its module-level ``PROCFS_PATH``; :meth:`HostSource.procfs`
sets it for the duration of a probe (under a lock, so two sources in one process
never see each other's files) and puts the previous value back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

_PROCFS_LOCK = threading.RLock()


@dataclasses.dataclass(frozen=True)
class HostSource:
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    root: Path = Path("/")

    @property
    def container(self) -> bool:
        """True when the host's root is mounted elsewhere (container mode)."""
        return self.root != Path("/")

    @contextlib.contextmanager
    def procfs(self, path: Path | None = None) -> Iterator[None]:
        """psutil reads ``path`` (default: this source's /proc) as /proc inside the block."""
        with _PROCFS_LOCK:
            previous = getattr(psutil, "PROCFS_PATH", "/proc")
            psutil.PROCFS_PATH = str(path or self.proc)
            try:
                yield
            finally:
                psutil.PROCFS_PATH = previous

    def proc_file(self, *parts: str) -> Path:
        return self.proc.joinpath(*parts)

    def sys_file(self, *parts: str) -> Path:
        return self.sys.joinpath(*parts)

    def host_path(self, mount_point: str) -> Path:
        """Where a mount point of the host is seen from here."""
        return self.root / mount_point.lstrip("/")

    def hostname(self) -> str:
        """The host's name: its /etc/hostname in container mode, else this machine's."""
        if self.container:
            with contextlib.suppress(OSError):
                name = (self.root / "etc" / "hostname").read_text().strip()
                if name:
                    return name
        return socket.gethostname()


def read_text(path: Path) -> str:
    """A small kernel file in one read (procfs and sysfs files are generated on read)."""
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()
