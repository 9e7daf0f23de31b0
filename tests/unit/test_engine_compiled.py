"""The compiled build of the matching engine (setup.py, engine.pxd) against engine.py.

* the compiled and the interpreted engine, fed the same random command streams, give
  the same outcomes, the same drained changes and the same book (hypothesis);
* a compiled build made from another engine.py or engine.pxd is never used;
* where the build can be made (a C compiler, CI) it was made, and it is in use.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matching_service
from matching_service import engine

PACKAGE = Path(matching_service.__file__).resolve().parent
ROOT = PACKAGE.parent
BUILT = sorted(PACKAGE.glob("_engine_c.*.so"))


def interpreted_engine():
    """engine.py run by the interpreter, under another module name (so it stays itself)."""
    name = "matching_service._engine_py"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PACKAGE / "engine.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def compiled_or_skip():
    if not BUILT:
        pytest.skip("the compiled engine is not built (no C compiler at install time)")
    from matching_service import _engine_c

    return _engine_c


def test_compiled_engine_is_built_and_used_where_it_can_be() -> None:
    if not BUILT:
        if os.environ.get("CI") and shutil.which(os.environ.get("CC", "cc")):
            pytest.fail("a C compiler is here but the compiled engine was not built: "
                        "see the warnings of pip install -e . (setup.py)")
        pytest.skip("the compiled engine is not built (no C compiler at install time)")
    compiled = compiled_or_skip()
    assert compiled.COMPILED and compiled.SOURCE_DIGEST == engine.source_digest()
    # engine.pxd was applied: the classes are extension types with typed fields
    for cls, field in ((compiled.Order, "price"), (compiled.Side, "front_levels"),
                       (compiled.OrderBook, "sequence")):
        assert type(cls.__dict__[field]).__name__ == "getset_descriptor", cls
    if os.environ.get("EXCHANGE_ENGINE", "").lower() != "python":
        assert engine is compiled and engine.COMPILED
    assert not interpreted_engine().COMPILED


def run_import(package_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_dir), str(ROOT)]))
    env.pop("EXCHANGE_ENGINE", None)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "import matching_service.engine as e; print(e.COMPILED, e.__name__)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=package_dir)


@pytest.mark.parametrize("edited", ["engine.py", "engine.pxd", None])
def test_a_stale_compiled_engine_is_never_used(tmp_path: Path, edited: str | None) -> None:
    """A copy of the package with the same compiled build: used as long as engine.py and
    engine.pxd are the ones it was built from; once either is edited, the interpreted
    engine runs and a warning says why."""
    compiled_or_skip()
    copy = tmp_path / "matching_service"
    copy.mkdir()
    for name in ("__init__.py", "engine.py", "engine.pxd"):
        shutil.copyfile(PACKAGE / name, copy / name)
    for so in BUILT:
        shutil.copyfile(so, copy / so.name)
    if edited:
        with (copy / edited).open("a") as f:
            f.write("\n# an edit after the build\n")
    result = run_import(tmp_path)
    assert result.returncode == 0, result.stderr
    if edited:
        assert result.stdout.split() == ["False", "matching_service.engine"]
        assert "RuntimeWarning" in result.stderr and "rebuild" in result.stderr
    else:
        assert result.stdout.split() == ["True", "matching_service._engine_c"]
        assert "RuntimeWarning" not in result.stderr


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


def order_row(order) -> tuple | None:
    if order is None:
        return None
    return (order.order_id, order.account_id, order.client_order_id, order.side, order.type,
            order.tif, order.post_only, order.price, order.quantity, order.filled,
            order.notional, order.state, order.reason, order.priority, order.last_sequence,
            order.created_ns, order.updated_ns, order.remaining)


def outcome_record(out) -> tuple:
    return (order_row(out.order),
            [tuple(f[:10]) + (f.maker.order_id, f.taker.order_id) for f in out.fills],
            out.duplicate, out.error, out.error_message, type(out.fills).__name__)


def changes_record(ch) -> tuple:
    return (ch.first_sequence, ch.last_sequence, ch.events, ch.orders,
            [tuple(t[:10]) for t in ch.trades], ch.bids, ch.asks)


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
def test_compiled_and_interpreted_engines_agree(commands: list) -> None:
    compiled = compiled_or_skip()
    interpreted = interpreted_engine()
    assert compiled.COMPILED and not interpreted.COMPILED
    assert play(compiled, commands) == play(interpreted, commands)


def test_agreement_on_a_long_seed_mix_stream() -> None:
    """The benchmark's stream (many levels, buckets of the price ladder coming and going)."""
    from bench import core

    compiled = compiled_or_skip()
    commands = []
    for kind, side, price, qty, account, _ in core.make_stream(20_000, 7, 0.0):
        if kind == core.LIMIT:
            commands.append(("new", account, side + 1, 1, 1, price, qty, "", False))
        else:
            commands.append(("new", account, side + 1, 2, 2, 0, qty, "", False))
        if len(commands) % 100 == 0:
            commands.append(("drain",))
    assert play(compiled, commands) == play(interpreted_engine(), commands)


def test_compiled_fill_and_outcome_are_named_tuples_out_of_the_gc() -> None:
    """The compiled build makes Fill and Outcome in C, not tracked by the garbage
    collector: they are still the named tuples, equal to the interpreted ones."""
    import gc

    compiled = compiled_or_skip()
    books = [mod.OrderBook(1) for mod in (compiled, interpreted_engine())]
    outs = []
    for mod, book in zip((compiled, interpreted_engine()), books, strict=True):
        book.new_order(1, mod.SELL, mod.LIMIT, mod.GTC, 100, 5, now_ns=7)
        outs.append(book.new_order(2, mod.BUY, mod.MARKET, mod.IOC, 0, 3, now_ns=8))
    out, expected = outs
    assert type(out) is compiled.Outcome and type(out.fills[0]) is compiled.Fill
    assert not gc.is_tracked(out) and not gc.is_tracked(out.fills[0])
    assert tuple(out.fills[0])[:10] == tuple(expected.fills[0])[:10]
    assert (out.order.filled, out.duplicate, out.error, len(out)) == (3, False, "", 5)
    assert books[0].drain_changes().trades == out.fills
