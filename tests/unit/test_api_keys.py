"""Tenant API keys: minting, parsing and matching, and that a malformed key never gets echoed."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connvault import api_keys
from connvault.errors import Unauthorized

if TYPE_CHECKING:
    from tests.support.secrets import SecretRegistry


def test_a_minted_key_is_shaped_cv_key_id_secret_and_parses_back_to_its_parts(secrets: SecretRegistry) -> None:
    minted = api_keys.mint()
    plaintext = minted.plaintext.reveal()
    secrets.add(plaintext)

    parsed = api_keys.parse(plaintext)

    assert re.fullmatch(r"cv_[a-z0-9]{16}_[A-Za-z0-9_-]{43}", plaintext)
    assert parsed.key_id == minted.key_id
    assert parsed.secret_sha256 == minted.secret_sha256
    assert api_keys.matches(parsed, minted.secret_sha256)


def test_two_minted_keys_share_neither_id_nor_secret(secrets: SecretRegistry) -> None:
    first, second = api_keys.mint(), api_keys.mint()
    secrets.add(first.plaintext.reveal(), second.plaintext.reveal())

    assert first.key_id != second.key_id
    assert first.secret_sha256 != second.secret_sha256


def test_a_key_matches_only_its_own_digest(secrets: SecretRegistry) -> None:
    mine, other = api_keys.mint(), api_keys.mint()
    secrets.add(mine.plaintext.reveal(), other.plaintext.reveal())

    parsed = api_keys.parse(mine.plaintext.reveal())

    assert api_keys.matches(parsed, mine.secret_sha256)
    assert not api_keys.matches(parsed, other.secret_sha256)
    assert not api_keys.matches(parsed, b"")


def test_neither_a_minted_nor_a_parsed_key_shows_its_secret_in_repr(secrets: SecretRegistry) -> None:
    minted = api_keys.mint()
    plaintext = minted.plaintext.reveal()
    secret_part = api_keys.parse(plaintext).secret.reveal()  # the secret itself may hold underscores
    secrets.add(plaintext, secret_part)

    shown = f"{minted!r} {minted} {api_keys.parse(plaintext)!r}"

    assert secret_part not in shown
    assert minted.key_id in shown


def test_surrounding_whitespace_is_ignored(secrets: SecretRegistry) -> None:
    minted = api_keys.mint()
    secrets.add(minted.plaintext.reveal())

    assert api_keys.parse(f"  {minted.plaintext.reveal()}\n").key_id == minted.key_id


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "cv_",
        "sk_abcdefghijklmnop_" + "a" * 43,
        "cv_ABCDEFGHIJKLMNOP_" + "a" * 43,
        "cv_abcdefghijklmno_" + "a" * 43,
        "cv_abcdefghijklmnop_" + "a" * 42,
        "cv_abcdefghijklmnop_" + "a" * 44,
        "cv_abcdefghijklmnop_" + "a" * 42 + "=",
        "Bearer cv_abcdefghijklmnop_" + "a" * 43,
    ],
)
def test_a_malformed_key_is_unauthorized_without_echoing_it(presented: str) -> None:
    with pytest.raises(Unauthorized) as error:
        api_keys.parse(presented)

    assert presented.strip() == "" or presented not in str(error.value)
    assert "aaaaaaaa" not in str(error.value)


@given(st.text(max_size=200))
def test_parsing_any_text_raises_nothing_but_unauthorized(presented: str) -> None:
    with contextlib.suppress(Unauthorized):
        api_keys.parse(presented)
