"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

from exchange_common.devrun import Stack


class Checks:
    """Failures collected along the way, so that one run reports all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failures.append(message)
            print("CHECK FAILED:", message)
        return ok

    def done(self) -> None:
        assert not self.failures, "\n".join(["failed checks:", *self.failures])


def meta(stack: Stack, who: str) -> tuple[tuple[str, str]]:
    return (("x-api-key", stack.keys[who]),)
