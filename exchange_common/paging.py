"""AIP-158 paging shared by every list call.

``page_size``: 0 means the default (100), above the maximum (1000) is
coerced to the maximum, negative is INVALID_ARGUMENT.

Page tokens are opaque to clients and signed: the position after the last item
returned (a few integers) and an HMAC-SHA256 over that position and the request's
filters, which include the account for a caller's own lists. A token is good only
for the same call with the same filters, so one issued to bob is refused for alice
(``PAGE_TOKEN_INVALID``) and never shows her anything. A signed position of the
wrong shape or outside its range (never issued, but the key may be known) is
refused the same way, before it reaches a query.

The key is ``EXCHANGE_PAGE_TOKEN_KEY`` (``PageTokens.from_settings``), the same on
every replica so that a token one issued works at the next; without it, a random
key per process, and tokens work only on the process that issued them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Sequence

from exchange_common.config import CommonSettings
from exchange_common.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
INT64_MAX = (1 << 63) - 1
# Longer tokens are refused unread (ours are well under 100 characters).
MAX_TOKEN_CHARS = 256
_MAC_BYTES = 16
# base64url without padding, twice: one spelling per token.
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size must not be negative", reason="PAGE_SIZE_INVALID",
                              field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _invalid() -> InvalidArgument:
    return InvalidArgument("page_token is invalid or does not match the request's filters",
                           reason="PAGE_TOKEN_INVALID", field="page_token")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class PageTokens:
    """Issues and checks the page tokens of one process (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a page token key must not be empty")
        self.key = key

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> PageTokens:
        """The key of ``EXCHANGE_PAGE_TOKEN_KEY``, or a random one (with a warning)."""
        if settings.page_token_key:
            return cls(settings.page_token_key.encode())
        log.warning("EXCHANGE_PAGE_TOKEN_KEY is not set: page tokens are signed with a random "
                    "key and work only on this process (set the same key on every replica)")
        return cls(secrets.token_urlsafe(32).encode())

    def _mac(self, payload: str, filters: tuple) -> bytes:
        message = f"{payload}\n{filters!r}".encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: Sequence[int], filters: tuple) -> str:
        payload = _b64(json.dumps(list(position), separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload, filters))}"

    def decode(self, token: str, filters: tuple, maxima: Sequence[int]) -> list[int] | None:
        """The position ``token`` names (None for no token): as many integers as
        ``maxima``, each from 0 to its maximum. InvalidArgument (PAGE_TOKEN_INVALID) for a
        token this service did not issue for these filters, or of another shape."""
        if not token:
            return None
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise _invalid()
        payload, _, mac = token.partition(".")
        try:
            ok = hmac.compare_digest(_unb64(mac), self._mac(payload, filters))
            position = json.loads(_unb64(payload)) if ok else None
        except (ValueError, binascii.Error):  # bad base64 or JSON
            position = None
        if not (isinstance(position, list) and len(position) == len(maxima)
                and all(type(x) is int and 0 <= x <= top
                        for x, top in zip(position, maxima, strict=True))):
            raise _invalid()
        return position
