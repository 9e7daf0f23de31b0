"""``python -m exchange_dev``: ``exchange-dev`` (``make run``)."""

from exchange_dev.cli import main

main()
