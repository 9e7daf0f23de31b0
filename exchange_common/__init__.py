"""Code shared by every service: configuration, numbers, errors, storage, server bootstrap.

Only what production pods run; dev and test tooling is ``exchange_dev``.
"""
