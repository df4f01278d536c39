"""The random values of an authorization request: ``state`` and the PKCE verifier/challenge (RFC 7636).

``state`` is stored only as its SHA-256 digest, so a leaked sessions table cannot be replayed against the
callback; the verifier is kept sealed until the code exchange.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

# 32 random bytes -> 43 url-safe characters: 256 bits, and exactly the RFC 7636 minimum verifier length.
_ENTROPY_BYTES = 32


def new_state() -> str:
    """A fresh, unguessable ``state`` (256 bits, url-safe, no padding)."""
    return secrets.token_urlsafe(_ENTROPY_BYTES)


def state_digest(state: str) -> bytes:
    """What is stored and looked up instead of the state itself."""
    return hashlib.sha256(state.encode()).digest()


def new_code_verifier() -> str:
    """A fresh PKCE ``code_verifier``: 43 characters from the unreserved set RFC 7636 allows."""
    return secrets.token_urlsafe(_ENTROPY_BYTES)


def code_challenge_s256(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(verifier)))`` without padding, as RFC 7636 §4.2 defines it."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
