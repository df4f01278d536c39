"""JWT assertions as a real authorization server checks them (RFC 7523): a service account's JWT-bearer grant and a
``private_key_jwt`` client's authentication."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_ASSERTION_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified; ``ValueError`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header, claims = (json.loads(_b64url_decode(part)) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not JSON objects")
    return header, claims


def verify_jwt(
    token: str, header: Mapping[str, Any], claims: Mapping[str, Any], key: Any, audiences: tuple[str, ...]
) -> None:
    """Signature (RS256 with an RSA key, ES256 with a P-256 key), audience and times, as RFC 7523 §3 asks."""
    signing_input, _, signature_part = token.rpartition(".")
    signature = _b64url_decode(signature_part)
    algorithm = header.get("alg")
    try:
        if algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        else:
            raise ValueError("unsupported algorithm for this key")
    except InvalidSignature:
        raise ValueError("bad signature") from None
    audience = claims.get("aud")
    named = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value in audiences for value in named):
        raise ValueError("not for this server")
    now = time.time()
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, int | float) or expires <= now - CLOCK_SKEW_SECONDS:
        raise ValueError("expired")
    if isinstance(issued, int | float) and (
        issued > now + CLOCK_SKEW_SECONDS or expires - issued > MAX_ASSERTION_LIFETIME_SECONDS
    ):
        raise ValueError("issued in the future or lives too long")


def _b64url_decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def b64url_json(document: Mapping[str, Any]) -> str:
    """One part of a compact JWS: the document's JSON in base64url without padding."""
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode("ascii")
