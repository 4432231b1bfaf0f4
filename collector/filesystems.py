"""The filesystems probe: space and inodes of every real mounted filesystem.

The mount table comes from the source's /proc: on a host, this process's own;
in container mode, the host's PID 1's (the host's mount namespace), each mount
point then being looked at under COLLECTOR_ROOT_PATH and reported as the host
names it, so the host's root is ``"/"``. Pseudo filesystems (proc, sysfs, cgroup,
tmpfs, overlay layers, snaps, ...) are skipped, except that the root is always
reported, whatever its type: ``filesystems["/"].percent`` is a tiered headline.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from typing import Any

from collector.probes import SampleContext, r
from collector.source import HostSource, read_text

log = logging.getLogger(__name__)

PSEUDO_TYPES = frozenset(
    """
    autofs binfmt_misc bpf cgroup cgroup2 configfs debugfs devpts devtmpfs efivarfs
    erofs fuse.gvfsd-fuse fuse.lxcfs fuse.portal fuse.snapfuse fusectl hugetlbfs
    iso9660 mqueue nsfs overlay proc procfs pstore ramfs rpc_pipefs securityfs
    selinuxfs squashfs sysfs tmpfs tracefs nfsd
    """.split()
)
# Mount points at or beneath these are the kernel's, or other containers' layers.
SKIP_AT_OR_BENEATH = ("/dev", "/proc", "/sys", "/run/credentials")
SKIP_BENEATH = ("/var/lib/docker/", "/var/lib/containers/", "/var/lib/kubelet/", "/snap/")

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount fields as \ooo.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """(device, mount point, type) of each line of a /proc/<pid>/mounts file."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((_unescape(fields[0]), _unescape(fields[1]), fields[2]))
    return out


def mount_table(source: HostSource) -> list[tuple[str, str, str]]:
    """The host's mounts, with mount points as the host names them."""
    if not source.container:
        return parse_mounts(read_text(source.proc_file("self", "mounts")))
    try:
        return parse_mounts(read_text(source.proc_file("1", "mounts")))
    except OSError:
        # Without access to the host's PID 1, this container's own table still
        # lists the host's mounts beneath the root path when it was mounted with
        # rslave propagation: take those, named as the host names them.
        root = str(source.root).rstrip("/")
        own = parse_mounts(read_text(source.proc_file("self", "mounts")))
        return [
            (dev, mp[len(root):] or "/", fstype)
            for dev, mp, fstype in own
            if mp == root or mp.startswith(root + "/")
        ]


def wanted(mount_point: str, fstype: str) -> bool:
    if mount_point == "/":
        return True
    if fstype in PSEUDO_TYPES:
        return False
    if any(mount_point == p or mount_point.startswith(p + "/") for p in SKIP_AT_OR_BENEATH):
        return False
    return not any(mount_point.startswith(p) for p in SKIP_BENEATH)


def usage(path: str) -> dict[str, Any]:
    """Space (as df counts it: percent of what non-root users can have) and inodes."""
    st = os.statvfs(path)
    size = st.f_frsize or st.f_bsize
    total = st.f_blocks * size
    free = st.f_bavail * size
    used = (st.f_blocks - st.f_bfree) * size
    reachable = used + free
    entry: dict[str, Any] = {
        "total": total,
        "used": used,
        "free": free,
        "percent": r(used / reachable * 100) if reachable else 0.0,
    }
    if st.f_files:  # some filesystems (btrfs) have no fixed inode count
        inodes_used = st.f_files - st.f_ffree
        entry.update(
            inodes_total=st.f_files,
            inodes_used=inodes_used,
            inodes_free=st.f_ffree,
            inodes_percent=r(inodes_used / st.f_files * 100),
        )
    return entry


class FilesystemProbe:
    name = "filesystems"

    def __init__(self) -> None:
        self._unreadable: set[str] = set()

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        visible: dict[str, tuple[str, str]] = {}
        for dev, mp, fstype in mount_table(ctx.source):
            if wanted(mp, fstype):
                visible[mp] = (dev, fstype)  # a later mount on the same point hides the earlier
        filesystems: dict[str, dict[str, Any]] = {}
        devices_seen: set[str] = set()
        # Shortest mount point first, so a device mounted twice (bind mounts) is
        # reported once, where df would report it.
        for mp in sorted(visible, key=lambda m: (len(m), m)):
            dev, fstype = visible[mp]
            if dev.startswith("/") and dev in devices_seen and mp != "/":
                continue
            path = str(ctx.source.host_path(mp))
            try:
                if mp != "/" and not stat.S_ISDIR(os.stat(path).st_mode):
                    continue  # a bind-mounted file (a container's /etc/hosts)
                entry = usage(path)
            except OSError as exc:
                # One unreadable mount (permission, gone, stale) costs that mount only.
                if mp not in self._unreadable:
                    self._unreadable.add(mp)
                    log.warning("filesystem %s skipped: %s", mp, exc.strerror or exc)
                continue
            self._unreadable.discard(mp)
            devices_seen.add(dev)
            filesystems[mp] = {"device": dev, "fstype": fstype, **entry}
        return {"filesystems": filesystems}
