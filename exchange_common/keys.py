"""API keys and admin keys: how they look, and how they are stored.

A key the exchange makes is ``<kind>_<id>_<secret>``: ``ex_`` for trading keys,
``exa_`` for admin keys, ``<id>`` 8 random hex digits and ``<secret>`` 32 random
bytes in URL-safe base64. The part before the secret (``ex_1a2b3c4d``) is its
*prefix*: public, shown in listings and audit entries, enough to name the key and
useless to call with. Only the SHA-256 of the whole key is stored (the key is 256
bits of randomness, so a plain hash is as strong as a slow one), so a key is shown
once, when it is made. A key given from outside (``EXCHANGE_DEV_API_KEYS``, a
bootstrap admin key from a Secret) may be any string; its prefix is then derived
from its hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets

API_KEY_KIND = "ex"
ADMIN_KEY_KIND = "exa"
# Longest key we look up: anything longer is refused without a look-up.
MAX_KEY_LENGTH = 256
# Shortest admin key accepted from outside (exchange-migrate's bootstrap key).
MIN_ADMIN_KEY_LENGTH = 16
_OURS = re.compile(r"^(exa?_[0-9a-f]{8})_[A-Za-z0-9_-]{20,}$")


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key(kind: str = API_KEY_KIND) -> tuple[str, str]:
    """A new key of ``kind``: (the whole key, its prefix)."""
    prefix = f"{kind}_{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def prefix_of(key: str, kind: str = API_KEY_KIND) -> str:
    """The public prefix of ``key``: its own for a key we made, else one from its hash."""
    m = _OURS.match(key)
    if m and m.group(1).startswith(kind + "_"):
        return m.group(1)
    return f"{kind}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def check_given_admin_key(key: str) -> str:
    """``key``, an admin key given from outside, if it is long enough, else ValueError."""
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        raise ValueError(f"the bootstrap admin key must have at least {MIN_ADMIN_KEY_LENGTH} "
                         "characters")
    return key
