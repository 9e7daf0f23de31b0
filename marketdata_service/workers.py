"""Several market-data processes on one port (``EXCHANGE_MARKETDATA_WORKERS``).

A market-data process is one asyncio loop, and at a thousand subscribers sending their messages
takes most of it: every message is a gRPC write and a ``sendmsg`` of its own. With
``EXCHANGE_MARKETDATA_WORKERS=N`` the process started (worker 0) starts N - 1 more once its
server listens, all of them listening on the same address with ``SO_REUSEPORT``, so the kernel
spreads new connections over them and their sends run on every core. Each worker is a whole
market-data server (it loads from PostgreSQL and reads the Redis streams itself, and answers
every RPC), so a client cannot tell which one it reached; a slow subscriber on one worker costs
the others nothing.

Worker 0 reports SERVING once every worker is serving, starts again a worker that fails or is
killed (after a pause that grows to ``MAX_RESTART_DELAY``; one that stops cleanly, by a signal
of its own, stays stopped), and stops them all when it stops (SIGTERM, then
SIGKILL after the shutdown grace). A worker stops by itself when worker 0 is gone, even after a
SIGKILL (it watches its parent process). On Kubernetes, more pod replicas do the same job; this
is for a machine with more cores than one market-data process can use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

# Set by worker 0 in the workers it starts; read as MarketDataSettings.marketdata_parent_pid
# and .marketdata_worker.
PARENT_ENV = "EXCHANGE_MARKETDATA_PARENT_PID"
INDEX_ENV = "EXCHANGE_MARKETDATA_WORKER"
# What a worker writes on its standard output once it is serving.
READY_LINE = b"serving\n"
MAX_RESTART_DELAY = 30.0


class Workers:
    """Workers 1..count-1, started and kept running by worker 0."""

    def __init__(self, count: int, listen: str, port: int, stop_grace: float,
                 env: Mapping[str, str] | None = None) -> None:
        """``env``: variables of the workers beyond worker 0's own."""
        host = listen.rpartition(":")[0]
        self.env = dict(env or {})
        self.count = count
        # The port worker 0 bound (the listen address may say port 0).
        self.listen = f"{host}:{port}"
        self.stop_grace = stop_grace
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._serving: set[int] = set()
        self._all_serving = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(i)) for i in range(1, self.count)]

    async def all_serving(self) -> None:
        """Returns once every worker has been serving (each after its first start)."""
        await self._all_serving.wait()

    async def _keep(self, index: int) -> None:
        delay = 1.0
        env = {**os.environ, **self.env, INDEX_ENV: str(index), PARENT_ENV: str(os.getpid()),
               "EXCHANGE_MARKETDATA_LISTEN": self.listen}
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "marketdata_service", env=env,
                stdout=asyncio.subprocess.PIPE)
            self.procs[index] = proc
            assert proc.stdout is not None
            if await proc.stdout.readline() == READY_LINE:
                delay = 1.0
                self._serving.add(index)
                if len(self._serving) == self.count - 1:
                    self._all_serving.set()
            while await proc.stdout.read(65536):
                pass  # until it exits (it writes nothing more, but a full pipe would block it)
            code = await proc.wait()
            if self._stopping or code == 0:
                return  # stopped by worker 0, or by a signal of its own (Ctrl-C)
            log.warning("market-data worker %d exited with %s; starting it again in %.0f s",
                        index, code, delay)
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
                log.warning("market-data worker %d did not stop; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def report_serving() -> None:
    """In a started worker: tell worker 0 that this one is serving."""
    sys.stdout.buffer.write(READY_LINE)
    sys.stdout.buffer.flush()


async def stop_with_parent(parent: int, interval: float = 0.5) -> None:
    """In a started worker: SIGTERM itself (a graceful stop) once worker 0 (pid ``parent``)
    is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(interval)
    log.warning("worker 0 (pid %d) is gone; stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)
