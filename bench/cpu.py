"""CPU accounting of every benchmark: one definition of busy CPU.

- A process's CPU is its user + system time (``psutil.Process.cpu_times``).
- The machine's busy CPU is user + nice + system + irq + softirq over all cores
  (``psutil.cpu_times``). Idle and iowait are not busy. Steal (time the hypervisor gave
  to other guests while this machine wanted a core) is not busy either: it is reported on
  its own (``steal``). Guest time is already inside user and nice on Linux.
- ``other``: the machine's busy CPU minus the CPU of the measured process groups (never
  below 0), i.e. the CPU of processes other than the measured ones: the rest of the
  machine, noise for the run (bench/RESULTS.md quotes it as ``other``).

A group is a list of root pids, optionally with all their descendants (PostgreSQL: the
postmaster and its backends and background processes). A sample reads every process of
every group; the usage over a window is the difference of two samples, per pid: a process
that appeared during the window counts all its CPU, one that disappeared is lost
(PostgreSQL backends of the services' pools live as long as the services).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class MachineTimes:
    """CPU seconds of the whole machine (all cores) since boot."""

    busy: float
    steal: float


def machine_times() -> MachineTimes:
    t = psutil.cpu_times()
    return MachineTimes(busy=t.user + t.nice + t.system + getattr(t, "irq", 0.0)
                        + getattr(t, "softirq", 0.0),
                        steal=getattr(t, "steal", 0.0))


def process_seconds(proc: psutil.Process) -> float | None:
    """User + system CPU seconds of ``proc``; None if it is gone (or not ours to read)."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system


def own_seconds() -> float:
    """User + system CPU seconds of this process."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def processes_seconds(procs: Iterable[psutil.Process]) -> float:
    """The sum of ``process_seconds`` over ``procs`` (the gone ones count 0)."""
    return sum(process_seconds(p) or 0.0 for p in procs)


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
    machine: MachineTimes = MachineTimes(0.0, 0.0)


class CpuProbe:
    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups

    def sample(self) -> Sample:
        out = Sample(time.monotonic(), machine=machine_times())
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
                    c = process_seconds(p)
                    if c is not None:
                        per[p.pid] = c
            out.cpu[g.name] = per
        return out

    def usage(self, a: Sample, b: Sample) -> dict[str, float]:
        """CPU seconds per group between samples ``a`` and ``b``, and ``other``."""
        out = {}
        for g in self.groups:
            before, after = a.cpu.get(g.name, {}), b.cpu.get(g.name, {})
            out[g.name] = sum(max(0.0, v - before.get(pid, 0.0)) for pid, v in after.items())
        # What else ran on the machine meanwhile (other programs: noise).
        out["other"] = max(0.0, self.busy(a, b) - sum(out.values()))
        return out

    @staticmethod
    def busy(a: Sample, b: Sample) -> float:
        """The machine's busy CPU seconds between the samples."""
        return b.machine.busy - a.machine.busy

    @staticmethod
    def steal(a: Sample, b: Sample) -> float:
        """CPU seconds stolen from the machine (by the hypervisor) between the samples."""
        return b.machine.steal - a.machine.steal

    def server_names(self) -> list[str]:
        return [g.name for g in self.groups if g.server]
