"""The generated code in exchange/ must match protos/ (run `make protos` after a change);
`make check-protos` (scripts/gen_protos.py --check) is the check, and names what is stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = [sys.executable, str(ROOT / "scripts" / "gen_protos.py")]


def test_generated_stubs_are_fresh() -> None:
    proc = subprocess.run([*GEN, "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_check_names_every_stale_file(tmp_path: Path) -> None:
    subprocess.run([*GEN, "--out", str(tmp_path)], check=True, capture_output=True)
    check = [*GEN, "--check", "--out", str(tmp_path)]
    assert subprocess.run(check, capture_output=True).returncode == 0
    edited = tmp_path / "exchange" / "order" / "v1" / "order_pb2.py"
    edited.write_text(edited.read_text() + "# edited by hand\n")
    (tmp_path / "exchange" / "common" / "v1" / "common_pb2.pyi").unlink()
    (tmp_path / "exchange" / "order" / "v1" / "stray_pb2.py").write_text("")
    proc = subprocess.run(check, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[1:] == [
        "  differs: exchange/order/v1/order_pb2.py",
        "  missing: exchange/common/v1/common_pb2.pyi",
        "  not generated from protos/: exchange/order/v1/stray_pb2.py",
    ]
