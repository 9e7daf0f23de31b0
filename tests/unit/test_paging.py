"""Signed page tokens (exchange_common.paging)."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange_common.config import CommonSettings
from exchange_common.errors import InvalidArgument
from exchange_common.paging import INT64_MAX, MAX_TOKEN_CHARS, PageTokens, page_size

TOKENS = PageTokens(b"test key")
ALICE = ("orders", 1, None, 0)
BOB = ("orders", 2, None, 0)
ONE = (INT64_MAX,)


def _invalid(token: str, filters: tuple = ALICE, maxima: tuple = ONE) -> None:
    with pytest.raises(InvalidArgument) as err:
        TOKENS.decode(token, filters, maxima)
    assert err.value.reason == "PAGE_TOKEN_INVALID" and err.value.field == "page_token"


def _payload(position) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def test_a_token_names_its_position_for_the_same_filters() -> None:
    assert TOKENS.decode("", ALICE, ONE) is None
    token = TOKENS.encode([12345], ALICE)
    assert TOKENS.decode(token, ALICE, ONE) == [12345]
    fills = TOKENS.encode([INT64_MAX, 2], ("fills", 1, None, None))
    assert TOKENS.decode(fills, ("fills", 1, None, None), (INT64_MAX, 2)) == [INT64_MAX, 2]


def test_a_token_of_another_account_or_other_filters_is_refused() -> None:
    token = TOKENS.encode([12345], BOB)
    _invalid(token, ALICE)
    _invalid(token, ("orders", 2, 1, 0))
    _invalid(token, ("fills", 2, None, None))


def test_a_token_signed_with_another_key_is_refused() -> None:
    _invalid(PageTokens(b"other key").encode([12345], ALICE))


def test_an_edited_position_is_refused() -> None:
    """Before: the token was base64 JSON with a digest of the filters only, so a position
    edited to 2**63 reached the query (INTERNAL)."""
    token = TOKENS.encode([12345], ALICE)
    mac = token.partition(".")[2]
    _invalid(f"{_payload([1 << 63])}.{mac}")
    _invalid(f"{_payload([12])}.{mac}")


@pytest.mark.parametrize("position", [
    [1 << 63], [-1], [INT64_MAX + 1], [], [1, 2], ["1"], [1.0], [True], [None], [[1]], {"p": 1},
    "1", 1, None,
])
def test_a_signed_position_of_the_wrong_shape_or_range_is_refused(position) -> None:
    """Tokens are never issued with these, but a leaked key must not reach a query with one."""
    payload = _payload(position)
    mac = base64.urlsafe_b64encode(TOKENS._mac(payload, ALICE)).decode().rstrip("=")
    _invalid(f"{payload}.{mac}")


def test_each_element_has_its_own_maximum() -> None:
    filters = ("fills", 1, None, None)
    _invalid(TOKENS.encode([5, 3], filters), filters, (INT64_MAX, 2))
    _invalid(TOKENS.encode([5], filters), filters, (INT64_MAX, 2))


def test_a_long_token_is_refused_unread() -> None:
    token = TOKENS.encode([1], ALICE)
    _invalid(token + "A" * (MAX_TOKEN_CHARS - len(token) + 1))


@given(st.text(min_size=1, max_size=300))
def test_any_text_is_refused_cleanly(text: str) -> None:
    _invalid(text)


def test_one_spelling_per_token() -> None:
    token = TOKENS.encode([1], ALICE)
    _invalid(token + "==")
    _invalid(token.replace(".", "=.", 1))


@given(st.text(max_size=120), st.integers(0, 80))
def test_a_tampered_token_is_refused(insert: str, at: int) -> None:
    token = TOKENS.encode([987654321], ALICE)
    tampered = token[:at] + insert + token[at:]
    if tampered != token and insert:
        _invalid(tampered)


def test_page_size() -> None:
    assert page_size(0) == 100 and page_size(7) == 7 and page_size(1 << 31) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_the_key_comes_from_settings_or_is_random_with_a_warning(caplog) -> None:
    settings = CommonSettings.model_construct(page_token_key="shared secret")
    with caplog.at_level(logging.WARNING, logger="exchange_common.paging"):
        configured = PageTokens.from_settings(settings)
    assert configured.key == b"shared secret" and not caplog.records
    assert PageTokens(b"shared secret").decode(configured.encode([1], ALICE), ALICE, ONE) == [1]

    empty = CommonSettings.model_construct(page_token_key="")
    with caplog.at_level(logging.WARNING, logger="exchange_common.paging"):
        first, second = PageTokens.from_settings(empty), PageTokens.from_settings(empty)
    assert first.key != second.key
    assert len(caplog.records) == 2
    assert "only on this process" in caplog.records[0].getMessage()
    with pytest.raises(InvalidArgument):
        second.decode(first.encode([1], ALICE), ALICE, ONE)
