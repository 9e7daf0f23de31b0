"""The compiled matching engine (everything else is in pyproject.toml).

mypyc compiles the modules of ``matching_service/engine/`` (all but ``__init__``) as they
are: each becomes an extension module beside its .py, which Python imports in its place,
plus one shared library (``matching_service/engine/compiled__mypyc``). ``pip install -e .``
(``make venv``) builds them in place; a wheel carries them. Beside them the build writes
``build-manifest.json``, the SHA-256 of each source it compiled: the engine refuses to
import a module compiled from another version of its source (matching_service/engine/
__init__.py), so after editing the engine, rebuild (``make venv`` does when a source is
newer than its stamp).

Without a C compiler the build warns, leaves no compiled module behind, and the same
modules run interpreted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mypyc.build import mypycify
from setuptools import setup
from setuptools.command.build_ext import build_ext

ENGINE = Path("matching_service") / "engine"
MODULES = ("enums", "order", "events", "money", "side", "stops", "expiry", "book")
GROUP = "matching_service.engine.compiled"


class BuildEngine(build_ext):
    """Builds the compiled engine and its manifest; any failure to compile leaves the
    interpreted engine in use instead of failing the install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler: the interpreted engine
            self.remove_builds()
            self.warn(f"the compiled matching engine was not built ({exc!r}); its modules "
                      f"run interpreted")
            return
        self.manifest().write_text(json.dumps(
            {name: hashlib.sha256((ENGINE / f"{name}.py").read_bytes()).hexdigest()
             for name in MODULES}, indent=2) + "\n")

    def manifest(self) -> Path:
        """build-manifest.json, where this build puts the engine's modules."""
        return Path(self.get_ext_fullpath(f"matching_service.engine.{MODULES[0]}")).with_name(
            "build-manifest.json")

    def remove_builds(self) -> None:
        """Remove what an earlier build left where this one would have put its modules."""
        for ext in self.extensions:
            Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
        self.manifest().unlink(missing_ok=True)


setup(
    ext_modules=mypycify([str(ENGINE / f"{name}.py") for name in MODULES], group_name=GROUP),
    cmdclass={"build_ext": BuildEngine},
)
