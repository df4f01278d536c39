"""Tenant API keys: ``cv_<key id>_<secret>``. Pure functions; storage is in ``db.tenants``.

The key id is public and finds the row; the secret (256 bits) is kept only as its SHA-256. A fast hash is
right here: the secret is random and long, so there is nothing to brute-force, and the authorizer runs on
every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

from connvault.errors import Unauthorized
from connvault.redacted import Redacted

PREFIX = "cv"
KEY_ID_LENGTH = 16
SECRET_BYTES = 32
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
_SHAPE = re.compile(r"^cv_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    secret: Redacted[str]

    @property
    def secret_sha256(self) -> bytes:
        return digest(self.secret.reveal())


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A new key: ``plaintext`` is shown to the tenant once and never stored."""

    key_id: str
    plaintext: Redacted[str]
    secret_sha256: bytes


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def mint() -> MintedKey:
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return MintedKey(key_id, Redacted(f"{PREFIX}_{key_id}_{secret}"), digest(secret))


def parse(presented: str) -> ParsedKey:
    """Split a presented key; anything not shaped like one is ``Unauthorized`` (and never echoed)."""
    match = _SHAPE.match(presented.strip())
    if match is None:
        raise Unauthorized("the API key is malformed")
    return ParsedKey(match.group(1), Redacted(match.group(2)))


def matches(parsed: ParsedKey, stored_sha256: bytes) -> bool:
    """Constant-time comparison of digests."""
    return hmac.compare_digest(parsed.secret_sha256, stored_sha256)
