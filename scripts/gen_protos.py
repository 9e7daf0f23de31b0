"""Generate Python code from protos/ into the `exchange` package.

The import path of the generated modules equals the proto package
(`exchange.order.v1.order_pb2`), so no import rewriting is needed.
Usage: python scripts/gen_protos.py [--out DIR] [--check]

--check (`make check-protos`) writes nothing: it generates into a temporary directory and
exits 1, naming them, when the files in DIR/exchange differ (`make protos` updates them).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from google.rpc import status_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out: Path) -> list[Path]:
    sources = sorted(PROTOS.rglob("*.proto"))
    well_known = str(files("grpc_tools") / "_proto")
    # google/rpc/*.proto ship with googleapis-common-protos (imported, not generated)
    googleapis = str(Path(status_pb2.__file__).resolve().parents[2])
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".protos-", dir=out))
    try:
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"-I{googleapis}",
            f"--python_out={staging}",
            f"--pyi_out={staging}",
            f"--grpc_python_out={staging}",
            *[str(s.relative_to(PROTOS)) for s in sources],
        ]
        # protoc resolves relative source paths against the -I roots.
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed; the generated code was left as it was")
        target = out / "exchange"
        if target.exists():
            shutil.rmtree(target)
        (staging / "exchange").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for directory in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    (target / "__init__.py").write_text(
        '"""Generated from protos/ by scripts/gen_protos.py. Do not edit."""\n')
    return sorted(p for p in target.rglob("*") if p.is_file())


def stale(out: Path) -> list[str]:
    """How the code in ``out/exchange`` differs from what protos/ generates now: one line per
    file, its path relative to ``out``."""
    committed = {p.relative_to(out) for p in (out / "exchange").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
    with tempfile.TemporaryDirectory(prefix="protos-check-") as tmp:
        fresh_root = Path(tmp)
        fresh = {p.relative_to(fresh_root) for p in generate(fresh_root)}
        changed = [p for p in sorted(fresh & committed)
                   if not filecmp.cmp(fresh_root / p, out / p, shallow=False)]
    return ([f"differs: {p}" for p in changed]
            + [f"missing: {p}" for p in sorted(fresh - committed)]
            + [f"not generated from protos/: {p}" for p in sorted(committed - fresh)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when OUT/exchange is not what protos/ gives")
    args = parser.parse_args()
    if args.check:
        problems = stale(args.out)
        if problems:
            print(f"{args.out / 'exchange'} is stale (run `make protos`):\n  "
                  + "\n  ".join(problems), file=sys.stderr)
            raise SystemExit(1)
        print(f"{args.out / 'exchange'} matches protos/", file=sys.stderr)
        return
    files_written = generate(args.out)
    print(f"generated {len(files_written)} files under {args.out / 'exchange'}", file=sys.stderr)


if __name__ == "__main__":
    main()
