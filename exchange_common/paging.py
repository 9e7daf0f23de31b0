"""AIP-158 paging shared by every list call.

``page_size``: 0 means the default (100), above the maximum (1000) is
coerced to the maximum, negative is INVALID_ARGUMENT. Page tokens are opaque
to clients: the position after the last item returned, plus a digest of the
request's filters, so a token cannot be replayed with other filters.
"""

from __future__ import annotations

import base64
import hashlib
import json

from exchange_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("page_size must not be negative", reason="PAGE_SIZE_INVALID",
                              field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(position: list[int], filters: tuple) -> str:
    raw = json.dumps({"p": position, "f": _digest(filters)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, filters: tuple) -> list[int] | None:
    """The position a token names, None for no token; InvalidArgument if it is not ours."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
        position = data["p"]
        ok = (data["f"] == _digest(filters) and isinstance(position, list)
              and all(type(x) is int for x in position))
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise InvalidArgument("page_token is invalid or does not match the request's filters",
                              reason="PAGE_TOKEN_INVALID", field="page_token")
    return position


def _digest(filters: tuple) -> str:
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
