"""The matching engine: one price-time-priority order book per instrument.

Typed Python with no I/O, driven by one writer; prices are integer ticks, quantities
integer lots. One concept per module:

* ``enums``  - the numbers the engine speaks in (sides, order types, states, the
  journal's event kinds), by name;
* ``order``  - ``OrderRow``, the record of one order for the ``orders`` table, and
  ``Order``, the live order the engine changes in place;
* ``events`` - the records the engine hands out: ``JournalEvent`` (a ``journal`` row),
  ``Trade`` (a fill, and its ``trades`` row), ``Outcome`` (what one command did) and
  ``Changes`` (what a batch changed);
* ``money``  - ``Terms`` (what an order holds, fees) and ``Settlement`` (a batch's
  balance changes);
* ``side``   - one side of a book: its price levels and their keys in price order;
* ``stops``  - the stop book: untriggered stop and stop-limit orders by trigger;
* ``expiry`` - when each good-till-time order expires;
* ``book``   - ``OrderBook``: the commands (new order, cancel, mass cancel, amend,
  expiry, status), the matching, self-trade prevention, stop triggers, and the batch
  of changes.

One source, one build: ``make venv`` (``pip install -e .``; setup.py) compiles these
modules with mypyc, and Python imports each compiled module in place of the .py beside
it. Without a C compiler the same install runs them interpreted. The tests run the
interpreted modules as the oracle of the compiled ones (tests/unit/test_engine_build.py).
A module compiled from another version of its source is refused at import (below):
rebuild with ``make venv``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType

from . import book, enums, events, expiry, money, order, side, stops
from .book import NO_LIMIT, RECENT_CLOSED, RECENT_MAX, OrderBook
from .enums import (
    BUY,
    CANCEL_ONLY,
    CANCELLED,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_EXPIRED,
    EV_REJECTED,
    EV_SELF_TRADE,
    EV_STATUS,
    EV_TIMED_OUT,
    EV_TRADE,
    EV_TRIGGERED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    GTT,
    HALTED,
    IOC,
    LIMIT,
    MAKER,
    MARKET,
    NEW,
    OPEN_STATES,
    PARTIALLY_FILLED,
    REJECTED,
    RESTING_STATES,
    SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    STP_DECREMENT,
    STP_NONE,
    STP_UNSPECIFIED,
    TAKER,
    TRADING,
    UNTRIGGERED,
)
from .events import (
    ERR_DUPLICATE,
    ERR_INSUFFICIENT_FUNDS,
    ERR_INVALID,
    ERR_ORDER_NOT_OPEN,
    ERR_POST_ONLY_WOULD_TAKE,
    NO_FILLS,
    Changes,
    JournalEvent,
    Outcome,
    Trade,
)
from .money import BASIS_POINTS, Settlement, Terms, fee
from .order import Order, OrderRow
from .side import (
    BUCKET_BITS,
    COMPACT_MIN_EMPTY,
    EMPTY,
    FRONT_MAX,
    REFILL,
    Level,
    Side,
    level_orders,
    level_quantity,
)

# The engine's modules, in import order, and where their sources are.
MODULES: tuple[ModuleType, ...] = (enums, order, events, money, side, stops, expiry, book)
SOURCES = Path(__file__).resolve().parent
# What setup.py compiled: module name -> SHA-256 of the source it was compiled from.
BUILD_MANIFEST = SOURCES / "build-manifest.json"


def build_of(module: ModuleType) -> str | None:
    """The file ``module`` runs from when that is not its source (a compiled build),
    else None."""
    loaded = module.__file__ or ""
    return None if loaded.endswith(".py") else loaded


def check_sources(modules: tuple[ModuleType, ...] = MODULES, sources: Path = SOURCES,
                  manifest: Path = BUILD_MANIFEST) -> None:
    """Every module runs from its source, or from a build of exactly its source in
    ``sources``: an edited module never runs from an older build. Raises ImportError
    otherwise."""
    built: dict[str, str] = json.loads(manifest.read_text()) if manifest.exists() else {}
    for module in modules:
        build = build_of(module)
        name = module.__name__.rpartition(".")[2]
        source = sources / f"{name}.py"
        if build is None or not source.exists():
            continue
        if built.get(name) != hashlib.sha256(source.read_bytes()).hexdigest():
            raise ImportError(f"{module.__name__} was compiled from another version of "
                              f"{source}: rebuild it (make venv, or pip install -e .)")


check_sources()

__all__ = [
    "BASIS_POINTS", "BUCKET_BITS", "BUY", "CANCELLED", "CANCEL_ONLY", "COMPACT_MIN_EMPTY",
    "Changes", "EMPTY", "ERR_DUPLICATE", "ERR_INSUFFICIENT_FUNDS", "ERR_INVALID",
    "ERR_ORDER_NOT_OPEN", "ERR_POST_ONLY_WOULD_TAKE", "EV_ACCEPTED", "EV_AMENDED",
    "EV_CANCELLED", "EV_EXPIRED", "EV_REJECTED", "EV_SELF_TRADE", "EV_STATUS", "EV_TIMED_OUT",
    "EV_TRADE", "EV_TRIGGERED", "EXPIRED", "FILLED", "FOK", "FRONT_MAX", "GTC", "GTT", "HALTED",
    "IOC", "JournalEvent", "LIMIT", "Level", "MAKER", "MARKET", "MODULES", "NEW", "NO_FILLS",
    "NO_LIMIT", "OPEN_STATES", "Order", "OrderBook", "OrderRow", "Outcome", "PARTIALLY_FILLED",
    "RECENT_CLOSED", "RECENT_MAX", "REFILL", "REJECTED", "RESTING_STATES", "SELL",
    "STP_CANCEL_BOTH", "STP_CANCEL_INCOMING", "STP_CANCEL_RESTING", "STP_DECREMENT",
    "STP_NONE", "STP_UNSPECIFIED", "Settlement", "Side", "TAKER", "TRADING", "Terms", "Trade",
    "UNTRIGGERED", "build_of", "check_sources", "fee", "level_orders", "level_quantity",
]
