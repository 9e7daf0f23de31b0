# Cython declarations for engine.py, read only when setup.py compiles it (see
# setup.py and the loader at the top of engine.py); the interpreted engine ignores
# this file. It types the classes' fields and a few locals so that the compiled
# code reads them directly. Every price, quantity, notional, sequence and time is
# an ``object``: a Python int, never a C integer (no silent overflow).
import cython


cdef class Order:
    cdef public object order_id, account_id, client_order_id, side, type, tif, post_only
    cdef public object price, quantity, filled, notional, state, reason, priority
    cdef public object created_ns, updated_ns, last_sequence


cdef class Side:
    cdef public object sign, empty, best
    cdef public dict levels, buckets, touched
    cdef public list heap

    @cython.locals(keys=list)
    cpdef add_level(self, key, level)
    @cython.locals(keys=list)
    cpdef remove_level(self, key)
    @cython.locals(keys=list, heap=list, buckets=dict)
    cpdef next_bucket(self)
    cpdef compact(self)
    @cython.locals(touched=dict, out=list, order=Order)
    cpdef list drain_touched(self)


cdef class OrderBook:
    cdef public object instrument_id, sequence, first_sequence, snapshot_sequence, _id_base
    cdef public Side bids, asks
    cdef public dict orders, open_client_ids, changed
    cdef public object closed_client_ids
    cdef public list events, trades

    @cython.locals(order=Order, other=Side, own=Side)
    cpdef new_order(self, account_id, side, type_, tif, price, quantity, client_order_id=*,
                    post_only=*, now_ns=*)
    @cython.locals(order=Order)
    cpdef cancel(self, account_id, order_id, now_ns=*)
    @cython.locals(order=Order, own=Side, other=Side)
    cpdef amend(self, account_id, order_id, price, quantity, now_ns=*)
    @cython.locals(order=Order, rows=list)
    cpdef drain_changes(self)
    cpdef _event(self, seq, kind, Order order, other, price, qty, now_ns)
    @cython.locals(maker=Order, queue=list, keys=list, levels=dict, buckets=dict,
                   touched=dict, orders=dict, changed=dict, fills=list)
    cpdef list _take(self, Order taker, Side other, limit, now_ns)
    cpdef _rest(self, Order order, Side own, key)
    @cython.locals(book=Side)
    cpdef _unrest(self, Order order)
    cpdef _expire(self, Order order, reason, now_ns)
    cpdef _close_client_id(self, Order order)
    cpdef _remember_closed(self, Order order)
