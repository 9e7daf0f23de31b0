"""The optional compiled matching engine (everything else is in pyproject.toml).

``matching_service/engine.py`` is plain Python and always works. When Cython and a C
compiler are at hand, ``pip install -e .`` (``make venv``) also compiles that same file,
with the declarations of ``engine.pxd``, into ``matching_service._engine_c``:

* the source is copied to ``build/engine_c/`` with two lines appended, ``COMPILED = True``
  and ``SOURCE_DIGEST``, the SHA-256 of engine.py and engine.pxd as built;
* ``engine.py`` uses the compiled module only when that digest is the one of the files
  next to it: an edited engine.py runs interpreted (with a warning) until rebuilt;
* no compiler, no Cython or a failed build: a warning, and the interpreted engine.

Rebuild after editing engine.py or engine.pxd: ``.venv/bin/pip install -e .`` (or
``.venv/bin/python setup.py build_ext --inplace``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SOURCE_DIR = ROOT / "matching_service"
GENERATED = ROOT / "build" / "engine_c" / "matching_service"
MODULE = "matching_service._engine_c"


def source_digest(directory: Path) -> str:
    """The same digest as matching_service.engine.source_digest (a test checks it)."""
    h = hashlib.sha256()
    for name in ("engine.py", "engine.pxd"):
        h.update((directory / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


class BuildEngine(build_ext):
    """Generates the C source with Cython first; any failure leaves the interpreted
    engine in use instead of failing the install."""

    def run(self) -> None:
        try:
            self.generate()
            super().run()
        except Exception as exc:  # noqa: BLE001 - optional extension: never fail the install
            self.warn(f"the compiled matching engine was not built ({exc!r}); "
                      f"the interpreted matching_service/engine.py is used")

    def generate(self) -> None:
        from Cython.Build import cythonize

        GENERATED.mkdir(parents=True, exist_ok=True)
        # A package, so that Cython finds _engine_c.pxd for matching_service._engine_c.
        (GENERATED / "__init__.py").write_text("")
        source = (SOURCE_DIR / "engine.py").read_text()
        digest = source_digest(SOURCE_DIR)
        (GENERATED / "_engine_c.py").write_text(
            f"{source}\n\n# Added by setup.py when compiling:\nCOMPILED = True\n"
            f"SOURCE_DIGEST = {digest!r}\n")
        shutil.copyfile(SOURCE_DIR / "engine.pxd", GENERATED / "_engine_c.pxd")
        cythonize(
            [Extension(MODULE, [str(GENERATED / "_engine_c.py")])],
            compiler_directives={
                "language_level": 3,
                # Annotations are documentation here, never C types or checks: the
                # compiled engine must accept exactly what the interpreted one does.
                "annotation_typing": False,
                "binding": True,
            },
            quiet=True,
            force=True,
        )


setup(
    ext_modules=[Extension(MODULE, [str((GENERATED / "_engine_c.c").relative_to(ROOT))])],
    cmdclass={"build_ext": BuildEngine},
)
