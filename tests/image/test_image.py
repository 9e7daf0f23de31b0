"""The image built here and run as the chart runs it: deploy/tools/image-check.

Marked ``image`` (tests/conftest.py) and skipped unless ``EXCHANGE_IMAGE_CHECK=1``: it needs
root, apt and npm on a first run, starts dockerd when none runs, and takes minutes (the
first run builds a Debian base with mmdebstrap and the image with podman). It uses
PostgreSQL and Redis at 127.0.0.1 (``EXCHANGE_IMAGE_CHECK_POSTGRES``,
``EXCHANGE_IMAGE_CHECK_REDIS``), in a database and a Redis db of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_image_runs_as_the_chart_runs_it() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "deploy/tools/image-check")],
                          capture_output=True, text=True, timeout=3600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "image-check: all checks passed" in proc.stdout, output[-6000:]
