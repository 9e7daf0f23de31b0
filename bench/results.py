"""Benchmark results: printed, and written to bench/results/ with the command and machine."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


# Settings whose values are not written down (credentials may be in them).
PRIVATE = ("URL", "KEY", "PASSWORD", "SECRET", "TOKEN")


def environment() -> dict[str, str]:
    """The EXCHANGE_* settings of this run (they change what is measured, e.g.
    EXCHANGE_ENGINE or EXCHANGE_COMMIT_MIN_INTERVAL); private ones only as "<set>"."""
    return {name: "<set>" if value and any(p in name for p in PRIVATE) else value
            for name, value in sorted(os.environ.items()) if name.startswith("EXCHANGE_")}


def write_result(name: str, figures: dict, command: str,
                 directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC)
    path = directory / f"{name}-{when:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"benchmark": name, "command": command,
                                "environment": environment(),
                                "date": when.isoformat(timespec="seconds"),
                                "machine": machine(), "figures": figures}, indent=2) + "\n")
    return path
