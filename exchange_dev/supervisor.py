"""Restarting dead matching pods the way Kubernetes restarts a crashed container.

``make run SHARDS=... STANDBYS=...`` runs several matching processes; when one dies (a
``kill -9``), a standby takes its instruments and ``Supervisor`` starts the dead one again
after a back-off: ``first`` seconds, doubled each time the process died within
``healthy_after`` seconds of its start (a crash loop), at most ``limit``; a process that ran
longer than ``healthy_after`` before it died starts over at ``first``. Every restart is
counted (Kubernetes' RESTARTS column).

Only the names in ``restartable`` are restarted; any other process of the stack that dies
(the order service, market data, PostgreSQL, Redis) ends ``watch()``, which returns its
name and exit code, and ``make run`` stops everything as it always did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exchange_dev.stack import Stack, StackError

log = logging.getLogger("exchange-dev")


@dataclass
class Backoff:
    """The delay before the next restart of one process."""

    first: float = 1.0
    limit: float = 30.0
    healthy_after: float = 60.0
    # Deaths in a row, each within healthy_after of its start.
    quick_deaths: int = 0

    def after_death(self, ran_for: float) -> float:
        """The delay before restarting a process that died after ``ran_for`` seconds."""
        if ran_for >= self.healthy_after:
            self.quick_deaths = 0
        delay = min(self.limit, self.first * 2 ** self.quick_deaths)
        self.quick_deaths += 1
        return delay


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Watches ``stack``'s processes; restarts the dead ones of ``restartable``."""

    def __init__(self, stack: Stack, restartable: Iterable[str],
                 label: Callable[[str], str] = str, first: float = 1.0,
                 limit: float = 30.0, healthy_after: float = 60.0) -> None:
        self.stack = stack
        self.label = label
        self.restartable = set(restartable)
        self.backoff = {n: Backoff(first, limit, healthy_after) for n in self.restartable}
        self.restarts = dict.fromkeys(self.restartable, 0)
        self.started_at = {n: time.monotonic() for n in self.restartable}
        self._restarting: dict[str, asyncio.Task] = {}

    async def watch(self, poll: float = 0.2) -> tuple[str, int]:
        """Run until a process that is not restarted dies: its name and exit code."""
        try:
            while True:
                for name, code in self.stack.exited().items():
                    if name not in self.restartable:
                        return name, code
                    if name not in self._restarting:
                        self._died(name, code)
                await asyncio.sleep(poll)
        finally:
            for task in self._restarting.values():
                task.cancel()
            for task in list(self._restarting.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _died(self, name: str, code: int) -> None:
        ran_for = time.monotonic() - self.started_at[name]
        delay = self.backoff[name].after_death(ran_for)
        pid = self.stack.processes[name].pid
        log.warning("%s (pid %d) died (%s) after %.0f s; its instruments go to a standby; "
                    "restarting it in %.0f s", self.label(name), pid, describe_exit(code),
                    ran_for, delay)
        self._restarting[name] = asyncio.create_task(self._restart(name, delay),
                                                     name=f"restart {name}")

    async def _restart(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.restarts[name] += 1
        self.started_at[name] = time.monotonic()
        try:
            proc = await self.stack.start_service(name)
        except StackError as err:
            # Dead again (or never SERVING, then stopped): the next round of watch() sees
            # it and backs off further.
            log.warning("%s did not come back: %s", self.label(name), err)
            await self.stack.stop_service(name)
            self._restarting.pop(name, None)
            return
        self._restarting.pop(name, None)
        log.info("%s restarted (restart %d): pid %d, SERVING", self.label(name),
                 self.restarts[name], proc.pid)
