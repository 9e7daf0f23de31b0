"""Bidirectional sessions whose answers go out of order (OrderEntry, matching's Execute).

A reader task takes the request messages and starts their commands; each command is
answered exactly once, whenever it is ready, with ``answer``. The handler's generator
(``responses``) writes the answers that wait as one response message (or a few, when
more wait than one message should hold), so under load many answers share a message,
and the call ends once the client stopped sending and every command was answered.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

Answer = TypeVar("Answer")
Request = TypeVar("Request")
Response = TypeVar("Response")


class AnswerPump(Generic[Answer]):
    """The answers of one session, waiting to be written, and the work behind them.

    ``weight(answer)`` says how much of a message an answer takes (1 by default); a
    message holds answers up to ``max_weight`` (at least one)."""

    def __init__(self, max_weight: int = 1000,
                 weight: Callable[[Answer], int] | None = None) -> None:
        self.max_weight = max_weight
        self.weight = weight
        self.out: deque[Answer] = deque()
        self.wake = asyncio.Event()
        self.outstanding = 0  # commands read and not answered yet
        self.reading = True
        self.tasks: set[asyncio.Task[Any]] = set()
        # Set whenever answers are taken for a message (``written``).
        self._taken = asyncio.Event()

    def expect(self, commands: int) -> None:
        """``commands`` more commands were read: each will be answered."""
        self.outstanding += commands

    def answer(self, answer: Answer) -> None:
        self.out.append(answer)
        self.outstanding -= 1
        self.wake.set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` for this session (cancelled when the session ends)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def written(self) -> None:
        """Until answers are next taken for a message (for a producer that waits while
        too many of its answers wait, rather than queue more)."""
        self._taken.clear()
        await self._taken.wait()

    def take(self) -> list[Answer]:
        """The answers for the next message: those waiting, up to ``max_weight``."""
        self._taken.set()
        out, weight = self.out, self.weight
        if weight is None:
            count = min(len(out), self.max_weight)
            return [out.popleft() for _ in range(count)]
        answers: list[Answer] = []
        total = 0
        while out and (not answers or total + weight(out[0]) <= self.max_weight):
            answer = out.popleft()
            total += weight(answer)
            answers.append(answer)
        return answers

    async def responses(self, requests: AsyncIterable[Request],
                        admit: Callable[[Request], Awaitable[None] | None],
                        message: Callable[[list[Answer]], Response]) -> AsyncIterator[Response]:
        """Read ``requests`` in a task, handing each to ``admit`` (which calls ``expect``
        and starts its commands), and yield ``message(answers)`` as answers come, until
        the requests end and everything is answered. An exception from reading (a
        malformed message the handler does not answer itself) ends the call with it, once
        the commands read before it are answered."""
        failed: list[BaseException] = []

        async def read() -> None:
            try:
                async for request in requests:
                    admitted = admit(request)
                    if admitted is not None:
                        await admitted
            except Exception as err:  # noqa: BLE001 - ends the call, after the answers
                failed.append(err)
            finally:
                self.reading = False
                self.wake.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                if self.out:
                    yield message(self.take())
                    continue
                if not self.reading and self.outstanding <= 0:
                    break
                self.wake.clear()
                await self.wake.wait()
        finally:
            reader.cancel()
            for task in list(self.tasks):
                task.cancel()
        if failed:
            raise failed[0]
