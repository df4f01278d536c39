"""JWT assertions signed with a private key (RFC 7523): the JWT-bearer grant of service accounts (§2.1) and
``private_key_jwt`` client authentication (§2.2), as compact JWS (RFC 7515) with ``cryptography``.

Two algorithms, the two that token endpoints ask for: ``RS256`` (an RSA key of 2048 to 4096 bits, Google's
service accounts) and ``ES256`` (an EC key on P-256). A key is checked once, when a tenant hands it over
(``parse_signing_key``): a PEM that does not load, is encrypted, or is another kind of key is an
``InvalidInput`` naming the request field, never quoting the PEM. What is stored is the key re-serialised as
unencrypted PKCS#8, so that nothing but the key itself is kept.

OpenSSL's full check of an RSA key (its primes tested) grows with about the fourth power of its size and holds
the GIL: 36 ms at 2048 bits, 0.28 s at 4096, 4.4 s at 8192 and 33 s at 16,384 here, which a 16 KB PEM admits.
So a key's size and shape are read before that check runs (``_check_rsa_shape``), anything past 4096 bits is
refused, and the check runs once, at intake; signing loads the stored key unchecked (0.05 ms against 36 ms at
2048 bits). An outside probe on 2026-11-30 froze every thread of a scheduled refresh for seconds per signature
with three 8192-bit keys.

A JWT library would do the same in more code; the part used here is a header, a payload and one signature.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from connvault.errors import ClientRejected, InvalidInput, ReauthRequired
from connvault.models import SigningKey
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

RS256 = "RS256"
ES256 = "ES256"
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
"""The largest RSA key token endpoints take (Google's are 2048 bits); larger ones cost seconds to check."""
MAX_PEM_LENGTH = 16_384
"""An RSA 4096-bit PKCS#8 PEM with comments is well under this; anything longer is not one key."""
MAX_KEY_ID_LENGTH = 256
ASSERTION_LIFETIME = timedelta(minutes=5)
"""An assertion is presented at once; a short life limits what a copy of one is worth (RFC 7523 §3, item 4)."""
JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def parse_signing_key(pem: str, field: str, *, key_id: str | None = None) -> SigningKey:
    """The key in ``pem``, checked and normalised; ``InvalidInput`` on ``field`` for anything else."""
    if not isinstance(pem, str) or not pem.strip() or len(pem) > MAX_PEM_LENGTH:
        raise InvalidInput(f"{field} must be a PEM private key of at most {MAX_PEM_LENGTH} characters", field=field)
    if key_id is not None and (not key_id or len(key_id) > MAX_KEY_ID_LENGTH or not key_id.isprintable()):
        raise InvalidInput(f"the key id must be 1 to {MAX_KEY_ID_LENGTH} printable characters", field=field)
    # Unchecked first, so that the costly check never runs on a key too large to keep (see above).
    algorithm = _algorithm(_loaded(pem, field, checked=False), field)
    key = _loaded(pem, field, checked=True)
    normalised = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(Redacted(normalised), algorithm, key_id)


def _loaded(pem: str, field: str, *, checked: bool) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(
            pem.encode(), password=None, unsafe_skip_rsa_key_validation=not checked
        )
    except TypeError:
        raise InvalidInput(f"{field} is encrypted; give the key unencrypted", field=field) from None
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        # ``from None``: the parser's message may quote the input, which is a secret.
        raise InvalidInput(f"{field} is not a PEM private key", field=field) from None


def _algorithm(key: object, field: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"{field} is an RSA key shorter than {MIN_RSA_BITS} bits", field=field)
        if key.key_size > MAX_RSA_BITS:
            raise InvalidInput(f"{field} is an RSA key longer than {MAX_RSA_BITS} bits", field=field)
        _check_rsa_shape(key, field)
        return RS256
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidInput(f"{field} is an EC key on a curve other than P-256", field=field)
        return ES256
    raise InvalidInput(f"{field} must be an RSA (RS256) or EC P-256 (ES256) private key", field=field)


def _check_rsa_shape(key: rsa.RSAPrivateKey, field: str) -> None:
    """Refuse, before OpenSSL's check, what would make that check or each signature cost far more than the
    modulus' size says. The check tests the primes before it multiplies them, so a 4096-bit modulus beside a
    huge known prime cost it seconds to hours (2^4423 - 1: 4.5 s); and OpenSSL verifies every signature by
    raising it to the public exponent (a 70,000-bit one: 0.6 s a signature). Two primes of half the modulus
    each, whose product it is, and an odd exponent below 2^32 (65537 in practice) cost what the size says."""
    numbers = key.private_numbers()
    public = numbers.public_numbers
    half = key.key_size / 2
    if numbers.p * numbers.q != public.n or any(abs(prime.bit_length() - half) > 2 for prime in (numbers.p, numbers.q)):
        raise InvalidInput(f"{field} is not an RSA key of two primes of half its size each", field=field)
    if not (3 <= public.e < 2**32 and public.e % 2 == 1):
        raise InvalidInput(f"{field} has an RSA public exponent outside 3 to 2^32 (65537 is usual)", field=field)


def sign(claims: Mapping[str, Any], key: SigningKey, refused: type[ReauthRequired] = ReauthRequired) -> str:
    """``claims`` as a compact JWS signed with ``key``. A stored RSA key past ``MAX_RSA_BITS`` (kept before the
    limit) is ``refused``, not signed with: the grant's own key (``ReauthRequired``) or the app's
    (``ClientRejected``)."""
    header: dict[str, str] = {"alg": key.algorithm, "typ": "JWT"}
    if key.key_id is not None:
        header["kid"] = key.key_id
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    # Checked in full when it was handed over (parse_signing_key); stored as that check left it.
    private = serialization.load_pem_private_key(
        key.pem.reveal().encode(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size > MAX_RSA_BITS:
            raise refused(f"the signing key is longer than {MAX_RSA_BITS} bits", reason="signing_key_too_large")
        signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        # JWS wants r || s, each 32 bytes for P-256 (RFC 7518 §3.4), not the DER that cryptography returns.
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:  # parse_signing_key lets no other key in
        raise TypeError("unsupported key type")
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def grant_assertion(
    *,
    issuer: str,
    audience: str,
    key: SigningKey,
    now: datetime,
    subject: str | None = None,
    scope: str | None = None,
) -> str:
    """The assertion of a JWT-bearer grant (RFC 7523 §3): ``iss`` the service account, ``aud`` the token
    endpoint (or the audience the server names), ``sub`` the user acted for, if any; Google reads ``scope``
    from the assertion too."""
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, **_times(now), "jti": secrets.token_urlsafe(16)}
    if subject is not None:
        claims["sub"] = subject
    if scope:
        claims["scope"] = scope
    return sign(claims, key)


def client_assertion(*, client_id: str, audience: str, key: SigningKey, now: datetime) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523 §3, OpenID Connect Core §9): issuer and subject the
    client, audience the token endpoint, and a fresh ``jti`` so a server can refuse a replay."""
    claims = {"iss": client_id, "sub": client_id, "aud": audience, **_times(now), "jti": secrets.token_urlsafe(16)}
    return sign(claims, key, ClientRejected)


def _times(now: datetime) -> dict[str, int]:
    issued = int(now.timestamp())
    return {"iat": issued, "exp": issued + int(ASSERTION_LIFETIME.total_seconds())}


def _segment(document: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(document, separators=(",", ":")).encode())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
