"""Benchmark results: printed, and written to bench/results/ with the command and machine.

Every bench writes its result file with ``write_result``: ``<name>-<UTC time>.json`` holding
the benchmark's name, its command line, the EXCHANGE_* settings, the date, the machine and
the figures (keys starting with ``_`` are the bench's own, e.g. a histogram, and are left
out); with ``plot``, a PNG of the same name beside it, named in the figures as ``plot``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


# Settings whose values are not written down (credentials may be in them).
PRIVATE = ("URL", "KEY", "PASSWORD", "SECRET", "TOKEN")


def environment() -> dict[str, str]:
    """The EXCHANGE_* settings of this run (they change what is measured, e.g.
    EXCHANGE_ENGINE or EXCHANGE_COMMIT_MIN_INTERVAL); private ones only as "<set>"."""
    return {name: "<set>" if value and any(p in name for p in PRIVATE) else value
            for name, value in sorted(os.environ.items()) if name.startswith("EXCHANGE_")}


def public(value: Any) -> Any:
    """``value`` without the keys starting with ``_`` of its dicts (at any depth)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()
                if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(value, list | tuple):
        return [public(v) for v in value]
    return value


def write_result(name: str, figures: dict[str, Any], command: str,
                 directory: Path = RESULTS,
                 plot: Callable[[Path], Path] | None = None) -> Path:
    """Write ``<directory>/<name>-<time>.json`` and return its path. ``plot`` is given the
    PNG path beside it, draws there and returns it; it is recorded as ``figures["plot"]``
    (relative to the repository when it is inside it)."""
    directory.mkdir(parents=True, exist_ok=True)
    when = dt.datetime.now(dt.UTC)
    path = directory / f"{name}-{when:%Y%m%dT%H%M%SZ}.json"
    figures = public(figures)

    def write() -> None:
        path.write_text(json.dumps({"benchmark": name, "command": command,
                                    "environment": environment(),
                                    "date": when.isoformat(timespec="seconds"),
                                    "machine": machine(), "figures": figures},
                                   indent=2) + "\n")

    write()
    if plot is not None:
        png = plot(path.with_suffix(".png"))
        root = RESULTS.parent.parent
        figures["plot"] = str(png.relative_to(root)) if png.is_relative_to(root) else str(png)
        write()
    return path
