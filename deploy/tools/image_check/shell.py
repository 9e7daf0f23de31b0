"""Running commands and reporting steps."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


class CheckFailed(Exception):
    """A step or a check failed; the message says which and why."""


def say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(title: str, failures: list[str]) -> Iterator[None]:
    """A titled step; it ends "ok" unless it added to ``failures`` (or raised)."""
    say(f"==> {title}")
    start, before = time.monotonic(), len(failures)
    yield
    outcome = "ok" if len(failures) == before else "failed"
    say(f"    {outcome} ({time.monotonic() - start:.1f} s)")


def run(*cmd: str, check: bool = True, log: Path | None = None, input_: bytes | None = None,
        timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Runs ``cmd``; output to ``log`` when given (its tail is shown on failure)."""
    if log is not None:
        with log.open("w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout, check=False)
        output = log.read_text()
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, input=input_.decode() if input_ else None)
        output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-30:])
        raise CheckFailed(f"{' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''} exited "
                          f"{proc.returncode}" + (f" (log: {log})" if log else "")
                          + f":\n{tail}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
