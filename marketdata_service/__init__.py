"""Market data: L2 order books, trades and their streams, derived from the matching pods' Redis
streams on top of a consistent initial state read from PostgreSQL.

Layers, outermost first:

- ``server``: process bootstrap (settings, pool, Redis, gRPC server, health, shutdown).
- workers: more processes on the same port (``EXCHANGE_MARKETDATA_WORKERS``), kept by the
  first (``exchange_common/workers.py``).
- ``servicer``: the public ``exchange.marketdata.v1.MarketDataService``; proto in and out only.
- ``feed``: the Redis stream reader, gap detection and rebuilds, instrument list reloads.
- ``market``: one instrument's live state (book, recent trades, subscribers) and the fan-out of
  each update, serialized once (``wire`` builds the messages).
- ``store``: PostgreSQL reads (instruments, initial state, older trades).
- ``book``, ``trades``, ``fanout``: plain Python (no gRPC, no I/O) driven by unit tests.
"""
