# Cython declarations for engine.py, read only when setup.py compiles it (see
# setup.py and the loader at the top of engine.py); the interpreted engine ignores
# this file. It types the classes' fields and a few locals so that the compiled
# code reads them directly. Every price, quantity, notional, sequence and time is
# an ``object``: a Python int, never a C integer (no silent overflow).
import cython

# True in the compiled build (engine.py sets it from cython.compiled): a C flag here.
cdef bint _C
# FRONT_MAX, REFILL and RECENT_MAX as C constants.
cdef Py_ssize_t _FRONT_MAX
cdef Py_ssize_t _REFILL
cdef Py_ssize_t _RECENT_MAX

# Fill and Outcome tuples made in one allocation of the named tuple type, with no
# call of tuple.__new__ (which builds an argument tuple, a slice of it and the plain
# tuple it copies), and not tracked by the garbage collector: the ``if _C`` branches
# of engine.py.
cdef extern from *:
    """
    static PyObject *engine_new_named(PyObject *type, Py_ssize_t n, PyObject **items) {
        /* Not tracked by the garbage collector (a Fill holds ints, a string and two
           Orders, an Outcome an Order and a list of Fills: no reference cycle can
           go through them), and not zeroed first: every item is set here. */
        PyObject *r = (PyObject *)PyObject_GC_NewVar(PyTupleObject, (PyTypeObject *)type, n);
        Py_ssize_t i;
        if (r == NULL) return NULL;
        for (i = 0; i < n; i++) {
            Py_INCREF(items[i]);
            PyTuple_SET_ITEM(r, i, items[i]);
        }
        return r;
    }
    static PyObject *engine_new_fill(PyObject *type, PyObject *a0, PyObject *a1,
            PyObject *a2, PyObject *a3, PyObject *a4, PyObject *a5, PyObject *a6,
            PyObject *a7, PyObject *a8, PyObject *a9, PyObject *a10, PyObject *a11) {
        PyObject *items[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
        return engine_new_named(type, 12, items);
    }
    static PyObject *engine_new_outcome(PyObject *type, PyObject *order, PyObject *fills) {
        static PyObject *empty = NULL;
        PyObject *items[5];
        if (empty == NULL) {
            empty = PyUnicode_FromStringAndSize("", 0);
            if (empty == NULL) return NULL;
        }
        items[0] = order; items[1] = fills; items[2] = Py_False;
        items[3] = empty; items[4] = empty;
        return engine_new_named(type, 5, items);
    }
    """
    object _new_fill "engine_new_fill"(object type, object trade_id, object sequence,
                                       object price, object quantity, object taker_side,
                                       object maker_order_id, object taker_order_id,
                                       object maker_account_id, object taker_account_id,
                                       object time_ns, object maker, object taker)
    object _new_outcome "engine_new_outcome"(object type, object order, object fills)


cdef class Order:
    cdef public object order_id, account_id, client_order_id, side, type, tif, post_only
    cdef public object price, quantity, filled, notional, state, reason, priority
    cdef public object created_ns, updated_ns, last_sequence, changed_in


cdef class Side:
    cdef public object sign, empty, best
    cdef public dict far, buckets, touched
    cdef public list front, front_levels
    cdef public list heap

    @cython.locals(front=list, i=Py_ssize_t)
    cpdef get(self, key)
    @cython.locals(front=list)
    cpdef set(self, key, level)
    @cython.locals(front=list, heap=list, i=Py_ssize_t)
    cpdef add_order(self, key, Order order)
    @cython.locals(front=list, heap=list, i=Py_ssize_t)
    cpdef add_level(self, key, level)
    cpdef push_back(self)
    @cython.locals(keys=list)
    cpdef ladder_add(self, key)
    @cython.locals(keys=list, front=list, i=Py_ssize_t)
    cpdef remove_level(self, key)
    @cython.locals(keys=list, heap=list, buckets=dict, far=dict, front=list)
    cpdef refill(self)
    cpdef compact(self)
    @cython.locals(touched=dict, out=list, order=Order)
    cpdef list drain_touched(self)


cdef class OrderBook:
    cdef public object instrument_id, sequence, first_sequence, snapshot_sequence, _id_base
    cdef public Side bids, asks
    cdef public dict recent, older, open_client_ids, open_by_account
    cdef public object status, last_price
    cdef public list changed
    cdef public object batch
    cdef public object closed_client_ids
    cdef public list events, trades

    @cython.locals(order=Order, other=Side, own=Side, recent=dict)
    cpdef new_order(self, account_id, side, type_, tif, price, quantity, client_order_id=*,
                    post_only=*, now_ns=*)
    @cython.locals(order=Order)
    cpdef cancel(self, account_id, order_id, now_ns=*)
    @cython.locals(order=Order, own=Side, other=Side)
    cpdef amend(self, account_id, order_id, price, quantity, now_ns=*)
    @cython.locals(order=Order, rows=list)
    cpdef drain_changes(self)
    cpdef _event(self, seq, kind, Order order, other, price, qty, now_ns)
    @cython.locals(maker=Order, queue=list, keys=list,
                   touched=dict, recent=dict, changed=list, fills=list, events=list,
                   trades=list)
    cpdef list _take(self, Order taker, Side other, limit, now_ns)
    @cython.locals(order=Order)
    cpdef resting_order(self, order_id)
    cpdef _age(self)
    cpdef _mark_changed(self, Order order)
    @cython.locals(counts=dict)
    cpdef _rest(self, Order order, Side own, key)
    @cython.locals(counts=dict)
    cpdef _one_less(self, account_id)
    @cython.locals(book=Side)
    cpdef _unrest(self, Order order)
    cpdef _expire(self, Order order, reason, now_ns)
    cpdef _close_client_id(self, Order order)
    cpdef _remember_closed(self, Order order)
