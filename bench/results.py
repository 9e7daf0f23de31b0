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


def write_result(name: str, figures: dict, command: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    when = dt.datetime.now(dt.UTC)
    path = RESULTS / f"{name}-{when:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"benchmark": name, "command": command,
                                "date": when.isoformat(timespec="seconds"),
                                "machine": machine(), "figures": figures}, indent=2) + "\n")
    return path
