"""The one build of the matching engine: mypyc's compiled modules against their sources.

* where a C compiler is at hand (CI), ``make venv`` compiled every module of the engine,
  and those compiled modules are the ones that run;
* a module compiled from another version of its source never runs: the import refuses;
* the compiled engine and its interpreted sources (the oracle: the same .py files,
  imported from a copy without the compiled modules), fed the same random command
  streams, give the same outcomes, the same drained records and the same book;
* without a C compiler the build warns, leaves no compiled module, and the engine runs
  interpreted.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching_service import engine
from matching_service.rows import fields

ENGINE = Path(engine.__file__).resolve().parent
ROOT = ENGINE.parent.parent
COMPILED = all(engine.build_of(m) for m in engine.MODULES)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> ModuleType:
    """The engine's sources run by the interpreter: a copy of its .py files, imported
    as the package ``engine_oracle``."""
    where = tmp_path_factory.mktemp("oracle")
    shutil.copytree(ENGINE, where / "engine_oracle", ignore=shutil.ignore_patterns(
        "*.so", "*.json", "__pycache__"))
    sys.path.insert(0, str(where))
    try:
        module = importlib.import_module("engine_oracle")
    finally:
        sys.path.remove(str(where))
    assert not any(module.build_of(m) for m in module.MODULES)
    return module


def compiled_or_skip() -> ModuleType:
    if not COMPILED:
        pytest.skip("the engine is not compiled (no C compiler at install time)")
    return engine


def test_the_compiled_engine_is_built_and_used_where_it_can_be(oracle) -> None:
    if not COMPILED:
        if os.environ.get("CI") and shutil.which(os.environ.get("CC", "cc")):
            pytest.fail("a C compiler is here but the engine was not compiled: see the "
                        "warnings of pip install -e . (setup.py)")
        pytest.skip("the engine is not compiled (no C compiler at install time)")
    # every module of the engine runs compiled (mypyc's __file__ is not always where the
    # module is, so only its name is checked), and the builds are beside the sources
    for module in engine.MODULES:
        name = module.__name__.rpartition(".")[2]
        assert Path(engine.build_of(module)).name.startswith(f"{name}.cpython-"), module
        assert list(ENGINE.glob(f"{name}.cpython-*.so")), module
    # ... and its classes are native: not the oracle's, no instance __dict__
    assert engine.Order is not oracle.Order
    assert not hasattr(engine.Order(1, 1, "", 1, 1, 1, False, 1, 1), "__dict__")
    # the records have the same fields in both
    for name in ("OrderRow", "Order", "JournalEvent", "Trade"):
        assert fields(getattr(engine, name)) == fields(getattr(oracle, name)), name


def run_import(where: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(where), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-c", "import matching_service.engine as e; "
         "print(all(e.build_of(m) for m in e.MODULES))"],
        env=env, capture_output=True, text=True, timeout=60, cwd=where)


@pytest.mark.parametrize("edited", ["book.py", "side.py", None])
def test_a_stale_compiled_module_never_runs(tmp_path: Path, edited: str | None) -> None:
    """A copy of the package with its compiled modules: they run as long as the sources
    beside them are the ones they were compiled from; once one is edited, importing the
    engine fails and says to rebuild."""
    compiled_or_skip()
    copy = tmp_path / "matching_service"
    copy.mkdir()
    shutil.copyfile(ENGINE.parent / "__init__.py", copy / "__init__.py")
    shutil.copytree(ENGINE, copy / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    if edited:
        with (copy / "engine" / edited).open("a") as f:
            f.write("\n# an edit after the build\n")
    result = run_import(tmp_path)
    if edited:
        assert result.returncode != 0
        assert "ImportError" in result.stderr and "rebuild" in result.stderr
        assert edited.removesuffix(".py") in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["True"]


def test_without_a_c_compiler_the_build_leaves_the_engine_interpreted(tmp_path: Path) -> None:
    """setup.py's build with a compiler that does not work: it warns, leaves no compiled
    module and no manifest, and the engine imports from its sources."""
    lib = tmp_path / "lib"
    env = dict(os.environ, CC="false", LDSHARED="false")
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib),
         "--build-temp", str(tmp_path / "temp")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "the compiled matching engine was not built" in result.stderr
    assert not list(lib.rglob("*.so")) and not list(lib.rglob("build-manifest.json"))
    # the package as such an install lays it out: sources only
    shutil.copytree(ENGINE.parent, lib / "matching_service", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.so", "*.json", "__pycache__"))
    imported = run_import(lib)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["False"]


# -- the same streams through both engines ----------------------------------------

BIG = 1 << 80  # far beyond any C integer: prices and quantities must stay Python ints
prices = st.one_of(st.integers(95, 105), st.integers(95, 105), st.sampled_from([0, -1, BIG]))
quantities = st.one_of(st.integers(1, 12), st.integers(1, 12), st.sampled_from([0, -3, BIG]))
new_order = st.tuples(
    st.just("new"),
    st.integers(1, 3),  # account
    st.sampled_from([1, 2, 1, 2, 0, 3]),  # side, sometimes malformed
    st.sampled_from([1, 1, 1, 2, 0]),  # type
    st.sampled_from([1, 1, 2, 3, 0]),  # time in force
    prices,
    quantities,
    st.sampled_from(["", "", "", "a", "b", "c"]),  # client_order_id
    st.booleans(),  # post only
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 60), st.integers(1, 3))
amend = st.tuples(st.just("amend"), st.integers(0, 60), st.integers(1, 3),
                  st.one_of(st.just(0), prices), st.one_of(st.just(0), quantities))
drain = st.tuples(st.just("drain"))
streams = st.lists(st.one_of(new_order, new_order, new_order, cancel, amend, drain),
                   min_size=1, max_size=120)


def values(record) -> tuple | None:
    """A record's fields, by its constructor's parameters."""
    if record is None:
        return None
    return tuple(getattr(record, f) for f in fields(type(record)))


def order_row(order) -> tuple | None:
    return None if order is None else (*values(order), order.remaining)


def outcome_record(out) -> tuple:
    return (order_row(out.order), [values(f) for f in out.fills], out.duplicate, out.error,
            out.error_message, type(out.fills).__name__)


def changes_record(ch) -> tuple:
    return (ch.first_sequence, ch.last_sequence, [values(e) for e in ch.events],
            [values(o) for o in ch.orders], [values(t) for t in ch.trades], ch.bids, ch.asks)


def book_record(book, mod) -> tuple:
    return ([order_row(o) for o in book.resting()], book.best_bid(), book.best_ask(),
            book.depth(mod.BUY), book.depth(mod.SELL), book.sequence, sorted(book.orders))


def play(mod, commands: list) -> list:
    """Everything observable of one stream through engine module ``mod``."""
    book = mod.OrderBook(3)
    placed: list[int] = []
    seen: list = []
    now = 1_000
    for command in commands:
        now += 7
        kind = command[0]
        try:
            if kind == "new":
                _, acct, side, type_, tif, price, qty, coid, post_only = command
                out = book.new_order(acct, side, type_, tif, price, qty, coid, post_only, now)
                if out.order is not None:
                    placed.append(out.order.order_id)
            elif kind == "cancel":
                _, pick, acct = command
                target = placed[pick % len(placed)] if placed else 12345
                out = book.cancel(acct, target, now)
            elif kind == "amend":
                _, pick, acct, price, qty = command
                target = placed[pick % len(placed)] if placed else 12345
                out = book.amend(acct, target, price, qty, now)
            else:
                seen.append(changes_record(book.drain_changes()))
                continue
        except Exception as exc:  # both engines must fail the same way, if at all
            seen.append(("raised", type(exc).__name__, str(exc)))
            continue
        seen.append(outcome_record(out))
    seen.append(changes_record(book.drain_changes()))
    seen.append(book_record(book, mod))
    # snapshot and restore: the resting orders rebuild the same book
    copy = mod.OrderBook(3, book.sequence)
    copy.restore(list(reversed(book.resting())))
    seen.append(book_record(copy, mod))
    seen.append(outcome_record(copy.new_order(1, mod.BUY, mod.MARKET, mod.IOC, 0, 25, "", False,
                                              now)))
    seen.append(outcome_record(copy.new_order(2, mod.SELL, mod.MARKET, mod.IOC, 0, 25, "",
                                              False, now)))
    seen.append(changes_record(copy.drain_changes()))
    return seen


@settings(max_examples=300, deadline=None)
@given(streams)
def test_compiled_and_interpreted_engines_agree(oracle, commands: list) -> None:
    compiled = compiled_or_skip()
    assert play(compiled, commands) == play(oracle, commands)


def test_agreement_on_a_long_seed_mix_stream(oracle) -> None:
    """The benchmark's stream (many levels, buckets of the price ladder coming and going)."""
    from bench import core

    compiled = compiled_or_skip()
    commands: list[tuple] = []
    for kind, side, price, qty, account, _ in core.make_stream(20_000, 7, 0.0):
        if kind == core.LIMIT:
            commands.append(("new", account, side + 1, 1, 1, price, qty, "", False))
        else:
            commands.append(("new", account, side + 1, 2, 2, 0, qty, "", False))
        if len(commands) % 100 == 0:
            commands.append(("drain",))
    assert play(compiled, commands) == play(oracle, commands)
