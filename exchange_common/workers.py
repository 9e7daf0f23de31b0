"""Several processes of one service on one port (``SO_REUSEPORT``).

A service process is one asyncio loop under one GIL: it cannot use more than one core. With
``EXCHANGE_ORDER_WORKERS=N`` (order service) or ``EXCHANGE_MARKETDATA_WORKERS=N`` (market
data) the process started (worker 0) starts N - 1 more once its server listens, all of them
listening on the same addresses with ``SO_REUSEPORT``, so the kernel spreads new connections
over them and their work runs on every core. Each worker is a whole service (its own pools,
caches and streams), so a client cannot tell which one it reached.

Health: a worker answers NOT_SERVING until worker 0 says every worker is ready (a line on
the worker's standard input); worker 0 turns SERVING at the same moment. So a probe sees
SERVING only once all are, whichever process its connection reached.

Worker 0 starts again a worker that fails or is killed (after a pause that grows to
``MAX_RESTART_DELAY``; one that stops cleanly, by a signal of its own, stays stopped), and
stops them all when it stops (SIGTERM, then SIGKILL after the shutdown grace). A worker stops
by itself when worker 0 is gone, even after a SIGKILL (it watches its parent process). On
Kubernetes, more pod replicas do the same job; workers are for a pod or machine with more
cores than one process can use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

# Set by worker 0 in the workers it starts; read as CommonSettings.worker and
# .worker_parent_pid.
PARENT_ENV = "EXCHANGE_WORKER_PARENT_PID"
INDEX_ENV = "EXCHANGE_WORKER"
# What a worker writes on its standard output once it is ready to serve ...
READY_LINE = b"ready\n"
# ... and what worker 0 writes on the worker's standard input once all are.
SERVE_LINE = b"serve\n"
MAX_RESTART_DELAY = 30.0


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup's CPU quota
    (a container's CPU limit: ``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in v1),
    rounded up, at least 1."""
    count = len(os.sched_getaffinity(0))
    quota: tuple[int, int] | None = None
    with contextlib.suppress(OSError, ValueError):
        limit, period = (cgroup / "cpu.max").read_text().split()
        if limit != "max":
            quota = int(limit), int(period)
    if quota is None:
        with contextlib.suppress(OSError, ValueError):
            limit_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            if limit_us > 0 and period_us > 0:
                quota = limit_us, period_us
    if quota is not None and quota[1] > 0:
        count = min(count, math.ceil(quota[0] / quota[1]))
    return max(1, count)


def worker_count(value: str | int) -> int:
    """A workers setting: a number, or ``auto`` for ``available_cpus()``."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return available_cpus()
    return int(value)


class Workers:
    """Workers 1..count-1 of the service ``module`` (``python -m module``), started and kept
    running by worker 0."""

    def __init__(self, module: str, count: int, listen_env: Mapping[str, str],
                 stop_grace: float, env: Mapping[str, str] | None = None,
                 on_exit: Callable[[int], None] = lambda pid: None) -> None:
        """``listen_env``: the listen variables of the workers, naming the ports worker 0
        bound (its settings may say port 0). ``env``: more variables for the workers.
        ``on_exit``: called with the pid of a worker that ended."""
        self.module = module
        self.on_exit = on_exit
        self.count = count
        self.env = {**dict(env or {}), **listen_env}
        self.stop_grace = stop_grace
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._all_ready = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(i)) for i in range(1, self.count)]
        if self.count <= 1:
            self._all_ready.set()

    async def all_serving(self) -> None:
        """Returns once every worker is ready (each after its first start), and tells
        them to report SERVING."""
        await self._all_ready.wait()

    async def _keep(self, index: int) -> None:
        delay = 1.0
        env = {**os.environ, **self.env, INDEX_ENV: str(index), PARENT_ENV: str(os.getpid())}
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self.procs[index] = proc
            assert proc.stdout is not None and proc.stdin is not None
            if await proc.stdout.readline() == READY_LINE:
                delay = 1.0
                self._ready.add(index)
                if len(self._ready) == self.count - 1:
                    self._all_ready.set()
                await self._all_ready.wait()
                with contextlib.suppress(ConnectionError):
                    proc.stdin.write(SERVE_LINE)
                    await proc.stdin.drain()
            while await proc.stdout.read(65536):
                pass  # until it exits (it writes nothing more, but a full pipe would block it)
            code = await proc.wait()
            self.on_exit(proc.pid)
            if self._stopping or code == 0:
                return  # stopped by worker 0, or by a signal of its own (Ctrl-C)
            log.warning("%s worker %d exited with %s; starting it again in %.0f s",
                        self.module, index, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        procs = [p for p in self.procs.values() if p.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), self.stop_grace + 5)
            except TimeoutError:
                log.warning("%s worker %d did not stop; killing it", self.module, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def ready_and_wait_to_serve() -> None:
    """In a started worker: tell worker 0 that this one is ready, and return once worker 0
    says that every worker is (then report SERVING)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.buffer.flush()
    if await reader.readline() != SERVE_LINE:
        # End of input: worker 0 is gone (stop_with_parent stops this one).
        await asyncio.Event().wait()


async def stop_with_parent(parent: int, interval: float = 0.5) -> None:
    """In a started worker: SIGTERM itself (a graceful stop) once worker 0 (pid ``parent``)
    is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    log.warning("worker 0 (pid %d) is gone; stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)
