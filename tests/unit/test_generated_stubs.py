"""The generated code in exchange/ must match protos/ (run `make protos` after a change)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True)
    fresh = {p.relative_to(tmp_path) for p in (tmp_path / "exchange").rglob("*") if p.is_file()}
    committed = {p.relative_to(ROOT) for p in (ROOT / "exchange").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    assert fresh == committed, "generated files differ in name: run `make protos`"
    stale = [str(p) for p in sorted(fresh)
             if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"stale generated files (run `make protos`): {stale}"
