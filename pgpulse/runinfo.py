"""One ``pgpulse up`` per data directory, and where it is for the next one to say.

``up`` holds an exclusive lock on ``<data_dir>/up.lock`` while it runs (the kernel
drops it when the process ends, however it ends) and keeps what a second ``up`` should
tell its user in ``<data_dir>/up.json``: the pid, the console's URL, where the data
lives. A second ``up`` that cannot take the lock reads that file and says so, instead
of failing on a taken port.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

LOCK_NAME = "up.lock"
INFO_NAME = "up.json"


class RunLock:
    """The lock of a running ``up``; :meth:`publish` records where it serves."""

    def __init__(self, data_dir: Path, handle: IO[str]) -> None:
        self.info_path = data_dir / INFO_NAME
        self._handle = handle
        self.info: dict[str, Any] = {"pid": os.getpid(),
                                     "started": datetime.now(UTC).isoformat(timespec="seconds")}
        self.publish()

    def publish(self, **info: Any) -> None:
        self.info.update(info)
        tmp = self.info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info))
        tmp.replace(self.info_path)

    def release(self) -> None:
        self.info_path.unlink(missing_ok=True)
        self._handle.close()  # closing drops the lock


def acquire(data_dir: Path) -> RunLock | None:
    """The lock for ``data_dir``, or None when another ``up`` holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_NAME, "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return RunLock(data_dir, handle)


def running(data_dir: Path) -> dict[str, Any]:
    """What the ``up`` holding the lock published (may be partial while it starts)."""
    try:
        return json.loads((data_dir / INFO_NAME).read_text())
    except (OSError, ValueError):
        return {}
