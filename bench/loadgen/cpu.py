"""CPU seconds of named process groups over a window.

A group is a list of root pids, optionally with all their descendants
(PostgreSQL: the postmaster and its backends and background processes). A
sample reads user + system CPU of every process of every group; the usage
over a window is the difference of two samples, per pid: a process that
appeared during the window counts all its CPU, one that disappeared is lost
(PostgreSQL backends of the services' pools live as long as the services).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class Group:
    name: str
    pids: list[int]
    children: bool = False  # include descendants (recursive)
    server: bool = True  # counts in "server CPU"


@dataclass
class Sample:
    at: float  # time.monotonic()
    cpu: dict[str, dict[int, float]] = field(default_factory=dict)  # group -> pid -> s
    busy: float = 0.0  # the whole machine: CPU seconds not idle (all cores)


def _cpu(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return t.user + t.system


class CpuProbe:
    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups

    def sample(self) -> Sample:
        t = psutil.cpu_times()
        out = Sample(time.monotonic(), busy=sum(t) - t.idle - getattr(t, "iowait", 0.0)
                     - getattr(t, "steal", 0.0) - getattr(t, "guest", 0.0)
                     - getattr(t, "guest_nice", 0.0))
        for g in self.groups:
            per: dict[int, float] = {}
            for pid in g.pids:
                try:
                    root = psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
                procs = [root]
                if g.children:
                    with contextlib.suppress(psutil.Error):
                        procs += root.children(recursive=True)
                for p in procs:
                    if p.pid == os.getpid() and g.name != "loadgen":
                        continue
                    c = _cpu(p)
                    if c is not None:
                        per[p.pid] = c
            out.cpu[g.name] = per
        return out

    def usage(self, a: Sample, b: Sample) -> dict[str, float]:
        """CPU seconds per group between samples ``a`` and ``b``."""
        out = {}
        for g in self.groups:
            before, after = a.cpu.get(g.name, {}), b.cpu.get(g.name, {})
            out[g.name] = sum(max(0.0, v - before.get(pid, 0.0)) for pid, v in after.items())
        # What else ran on the machine meanwhile (other programs: noise).
        out["other"] = max(0.0, (b.busy - a.busy) - sum(out.values()))
        return out

    def server_names(self) -> list[str]:
        return [g.name for g in self.groups if g.server]
