"""Open-loop load generator for the exchange's order entry (``python -m bench.loadgen``).

Every order has a scheduled send time on a fixed arrival rate; its latency is
counted from that time, not from when it was actually sent, so a stall of the
server (or of the generator) shows up in the figures instead of quietly
lowering the rate (no coordinated omission). Several worker processes share
the rate when one cannot keep it (``--procs``); their HDR histograms are
merged.

Modules:

- ``spec``: presets and the arrival schedule (the order mixes and the seeded order
  stream are ``bench.orders``, shared with the other benches);
- ``worker``: one worker process (its own asyncio loop and gRPC channels),
  unary ``CreateOrder``/``CancelOrder`` or ``OrderEntry`` sessions;
- ``targets``: the exchange (a ``Stack`` of its own, or a running one) and
  the echo floor (``bench/echo.py``); accounts, prefill, durability check;
- ``runner``: one timed run: workers, live progress line, figures;
- ``report``: summary tables, JSON result and PNG plot;
- ``cli``: the command line.

Shared with the other benches: ``bench.orders`` (the seeded orders), ``bench.cpu`` (CPU
seconds of the server processes, PostgreSQL backends included, and of the generator over a
window), ``bench.histogram`` (the latency histograms) and ``bench.results`` (the result
file).
"""
