# Copied unchanged (below this header) from shared/reference/baseline_book.py, the
# reference baseline of the matching-core benchmark (bench/core.py), so that the
# repository stands alone. Do not edit: it is the bar, not part of the project.

"""Reference baseline: a plain price-time-priority limit order book in pure Python.

Deliberately straightforward: the 'plain Python' point of comparison for the
matching core benchmark (measure the project's engine and this one in the same
run, on the same order stream, and quote the ratio):

* each side is a ``sortedcontainers.SortedDict`` of price -> ``deque`` of orders
  (bids: best = last key, asks: best = first key);
* ``orders`` maps order id -> resting order, for cancel;
* prices are integer ticks, quantities integer lots;
* limit orders match at the maker's price, the remainder rests (GTC);
* market orders sweep the book, the unfilled remainder is dropped (IOC);
* cancel removes a resting order by id.

Every call returns the fills it caused as a list of
``(maker_id, taker_id, price, qty)`` tuples (empty list when nothing traded),
which is the least a matching core has to report.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

BUY = 0
SELL = 1


class Order:
    __slots__ = ("oid", "side", "price", "qty")

    def __init__(self, oid: int, side: int, price: int, qty: int) -> None:
        self.oid = oid
        self.side = side
        self.price = price
        self.qty = qty


class OrderBook:
    __slots__ = ("bids", "asks", "orders")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # price -> deque[Order]; best = highest
        self.asks: SortedDict = SortedDict()  # price -> deque[Order]; best = lowest
        self.orders: dict[int, Order] = {}

    # -- matching ---------------------------------------------------------
    def _take(self, oid: int, side: int, limit: int | None, qty: int) -> tuple[int, list]:
        """Match ``qty`` against the opposite side; return (remaining, fills)."""
        fills: list = []
        orders = self.orders
        if side == BUY:
            book = self.asks
            idx = 0
        else:
            book = self.bids
            idx = -1
        while qty and book:
            price, queue = book.peekitem(idx)
            if limit is not None and (price > limit if side == BUY else price < limit):
                break
            while qty and queue:
                maker = queue[0]
                fill = qty if qty < maker.qty else maker.qty
                qty -= fill
                maker.qty -= fill
                fills.append((maker.oid, oid, price, fill))
                if maker.qty == 0:
                    queue.popleft()
                    del orders[maker.oid]
            if not queue:
                del book[price]
        return qty, fills

    # -- public API -------------------------------------------------------
    def limit(self, oid: int, side: int, price: int, qty: int) -> list:
        """Place a limit order; the unfilled remainder rests on the book."""
        qty, fills = self._take(oid, side, price, qty)
        if qty:
            order = Order(oid, side, price, qty)
            book = self.bids if side == BUY else self.asks
            queue = book.get(price)
            if queue is None:
                queue = book[price] = deque()
            queue.append(order)
            self.orders[oid] = order
        return fills

    def market(self, oid: int, side: int, qty: int) -> list:
        """Place a market order; whatever cannot fill now is dropped (IOC)."""
        return self._take(oid, side, None, qty)[1]

    def cancel(self, oid: int) -> bool:
        """Cancel a resting order; False if it is not on the book."""
        order = self.orders.pop(oid, None)
        if order is None:
            return False
        book = self.bids if order.side == BUY else self.asks
        queue = book[order.price]
        queue.remove(order)
        if not queue:
            del book[order.price]
        return True

    # -- inspection (not used on the timed path) --------------------------
    def best_bid(self) -> int | None:
        return self.bids.peekitem(-1)[0] if self.bids else None

    def best_ask(self) -> int | None:
        return self.asks.peekitem(0)[0] if self.asks else None

    def side_stats(self, side: int) -> tuple[int, int, int]:
        """(resting orders, resting lots, price levels) on one side."""
        book = self.bids if side == BUY else self.asks
        n = vol = 0
        for queue in book.values():
            n += len(queue)
            for o in queue:
                vol += o.qty
        return n, vol, len(book)
