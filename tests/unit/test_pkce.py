"""PKCE and state values: RFC 7636 shapes, the RFC's own test vector, enough entropy."""

from __future__ import annotations

import hashlib
import re

from connvault.oauth.pkce import code_challenge_s256, new_code_verifier, new_state, state_digest

_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def test_code_challenge_matches_the_rfc_7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_code_verifier_uses_only_unreserved_characters_within_the_allowed_length() -> None:
    for _ in range(200):
        assert _UNRESERVED.fullmatch(new_code_verifier())


def test_challenge_is_unpadded_base64url_of_a_sha256() -> None:
    challenge = code_challenge_s256(new_code_verifier())

    assert len(challenge) == 43
    assert "=" not in challenge
    assert re.fullmatch(r"[A-Za-z0-9_-]+", challenge)


def test_states_and_verifiers_do_not_repeat() -> None:
    assert len({new_state() for _ in range(1000)}) == 1000
    assert len({new_code_verifier() for _ in range(1000)}) == 1000


def test_state_carries_256_bits_in_url_safe_characters() -> None:
    state = new_state()

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", state)


def test_state_digest_is_the_sha256_of_the_state() -> None:
    state = new_state()

    assert state_digest(state) == hashlib.sha256(state.encode()).digest()
    assert state_digest(state) == state_digest(state)
    assert state_digest(state) != state_digest(new_state())
