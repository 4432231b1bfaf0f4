"""The processes probe: how many processes, in which states, and the top N.

The count and the kernel's running/blocked figures are cheap (a directory listing
and /proc/stat) and come in every snapshot. Per-state counts and the top N by CPU
and by memory need a read of every process, which costs far more than the rest of
a snapshot together (see docs/performance.md): that walk runs only when
COLLECTOR_TOP_N > 0.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from typing import Any

import psutil

from collector.probes import SampleContext, r
from collector.source import read_text


@dataclasses.dataclass
class _Tracked:
    process: psutil.Process
    cpu: float | None = None  # user + system seconds at the previous sample
    username: str | None = None


def _clean(text: str) -> str:
    # psutil decodes names with surrogateescape; JSON (and jsonb) wants valid UTF-8.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def kernel_counts(stat_text: str) -> dict[str, int]:
    """procs_running and procs_blocked of /proc/stat (tasks runnable / in D state)."""
    out = {}
    for line in stat_text.splitlines():
        if line.startswith("procs_running "):
            out["running"] = int(line.split()[1])
        elif line.startswith("procs_blocked "):
            out["blocked"] = int(line.split()[1])
    return out


class ProcessProbe:
    name = "processes"

    def __init__(self, top_n: int) -> None:
        self.top_n = top_n
        self._tracked: dict[int, _Tracked] = {}

    def read(self, ctx: SampleContext) -> dict[str, Any]:
        with ctx.source.procfs():
            pids = psutil.pids()
        section: dict[str, Any] = {"count": len(pids)}
        section.update(kernel_counts(read_text(ctx.source.proc_file("stat"))))
        try:
            # "runnable/total" scheduling entities: the total is the thread count.
            section["threads"] = int(read_text(ctx.source.proc_file("loadavg")).split()[3].split("/")[1])
        except (OSError, ValueError, IndexError):
            pass  # the load probe reports the missing file; the count stands without it
        if not self.top_n:
            return {"processes": section}
        states, top = self._walk(pids, ctx)
        section["states"] = states
        return {"processes": section, "top": top}

    def _walk(self, pids: list[int], ctx: SampleContext) -> tuple[dict[str, int], dict[str, list]]:
        alive = set(pids)
        for gone in self._tracked.keys() - alive:
            del self._tracked[gone]
        states: Counter[str] = Counter()
        rows = []
        with ctx.source.procfs():
            for pid in pids:
                tracked = self._tracked.get(pid)
                try:
                    if tracked is None:
                        tracked = self._tracked[pid] = _Tracked(psutil.Process(pid))
                    proc = tracked.process
                    with proc.oneshot():
                        status = proc.status()
                        times = proc.cpu_times()
                        rss = proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    # Gone between the listing and the read, or not ours to read.
                    self._tracked.pop(pid, None)
                    continue
                states[status.replace("-", "_")] += 1
                cpu = times.user + times.system
                cpu_percent = None
                # A lower CPU time than last time: the PID was reused, start over.
                if tracked.cpu is not None and ctx.elapsed and cpu >= tracked.cpu:
                    cpu_percent = (cpu - tracked.cpu) / ctx.elapsed * 100
                tracked.cpu = cpu
                rows.append((pid, cpu_percent, rss, tracked))
            by_cpu = heapq.nlargest(
                self.top_n, (row for row in rows if row[1] is not None), key=lambda row: row[1]
            )
            by_memory = heapq.nlargest(self.top_n, rows, key=lambda row: row[2])
            top = {
                "by_cpu": [self._entry(row, ctx) for row in by_cpu],
                "by_memory": [self._entry(row, ctx) for row in by_memory],
            }
        return dict(sorted(states.items())), top

    @staticmethod
    def _entry(row: tuple, ctx: SampleContext) -> dict[str, Any]:
        pid, cpu_percent, rss, tracked = row
        # Name and user only for the few listed: a name of 15 characters (the
        # kernel's limit) costs psutil a read of the command line as well.
        try:
            name = _clean(tracked.process.name())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            name = ""
        if tracked.username is None:
            try:
                tracked.username = _clean(tracked.process.username())
            except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
                tracked.username = ""
        memory_percent = rss / ctx.memory_total * 100 if ctx.memory_total else None
        return {
            "pid": pid,
            "name": name,
            "username": tracked.username or None,
            "cpu_percent": r(cpu_percent),
            "memory_rss": rss,
            "memory_percent": r(memory_percent),
        }
