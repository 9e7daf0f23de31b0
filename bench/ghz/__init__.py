"""ghz configurations for the exchange (see README.md here) and their helpers.

- ``template``: renders the subset of ghz's call-template actions the configurations
  use (``{{.RequestNumber}}``, ``{{newUUID}}``, ``{{randomInt a b}}``, ``printf``), the
  way ghz does, so that tests and ``check`` can build the very requests ghz would send;
- ``place_resting``: places the resting orders that ``cancel_order.json`` cancels;
- ``check``: sends each configuration's requests once through server reflection (as
  ghz resolves them) to a running exchange, for machines without ghz.
"""

from pathlib import Path

GHZ_DIR = Path(__file__).resolve().parent
CONFIGS = ("create_order.json", "cancel_order.json", "get_order_book.json",
           "order_entry.json", "order_entry_batch.json")
