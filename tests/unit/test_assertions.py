"""JWT assertions (``connvault.oauth.assertions``) checked by an independent verifier, and the sealed document
of each connection kind read back as written."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from connvault.errors import ClientRejected, InvalidInput, ReauthRequired
from connvault.models import (
    ClientAuthMethod,
    ClientCredentials,
    ClientCredentialsGrant,
    JwtBearerGrant,
    OAuth2Credentials,
    SigningKey,
    credentials_from_bytes,
    credentials_to_bytes,
)
from connvault.oauth.assertions import RS256, client_assertion, grant_assertion, parse_signing_key
from connvault.redacted import Redacted
from tests.support.keys import ec_key, rsa_key, rsa_pem

OVERSIZED_BITS = 4352

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def decode(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def signature_of(token: str) -> bytes:
    segment = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_an_rs256_grant_assertion_verifies_with_the_public_key() -> None:
    pair = rsa_key()
    key = parse_signing_key(pair.private_pem, "private_key", key_id="kid-1")

    token = grant_assertion(
        issuer="sa@x.iam", audience="https://idp/token", key=key, now=NOW, subject="ada@x", scope="a b"
    )

    header, claims, _ = token.split(".")
    assert decode(header) == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    body = decode(claims)
    assert {k: body[k] for k in ("iss", "aud", "sub", "scope", "iat", "exp")} == {
        "iss": "sa@x.iam",
        "aud": "https://idp/token",
        "sub": "ada@x",
        "scope": "a b",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 300,
    }
    public = serialization.load_pem_public_key(pair.public_pem.encode())
    public.verify(signature_of(token), token.rsplit(".", 1)[0].encode(), padding.PKCS1v15(), hashes.SHA256())


def test_an_es256_client_assertion_is_a_raw_64_byte_signature_that_verifies() -> None:
    pair = ec_key()
    key = parse_signing_key(pair.private_pem, "private_key")

    token = client_assertion(client_id="svc", audience="https://idp/token", key=key, now=NOW)

    header, claims, _ = token.split(".")
    assert decode(header) == {"alg": "ES256", "typ": "JWT"}
    assert decode(claims)["iss"] == decode(claims)["sub"] == "svc"
    raw = signature_of(token)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = serialization.load_pem_public_key(pair.public_pem.encode())
    public.verify(der, token.rsplit(".", 1)[0].encode(), ec.ECDSA(hashes.SHA256()))


def test_each_assertion_has_its_own_jti() -> None:
    key = parse_signing_key(ec_key().private_pem, "private_key")

    tokens = {client_assertion(client_id="svc", audience="a", key=key, now=NOW) for _ in range(5)}

    assert len({decode(token.split(".")[1])["jti"] for token in tokens}) == 5


def test_a_traditional_rsa_pem_is_stored_as_pkcs8() -> None:
    pair = rsa_key()
    loaded = serialization.load_pem_private_key(pair.private_pem.encode(), password=None)
    traditional = loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()

    key = parse_signing_key(traditional, "private_key")

    assert key.pem.reveal().startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    "pem", ["", " ", "x" * 20_000, "-----BEGIN PRIVATE KEY-----\n\udc80\n-----END PRIVATE KEY-----"]
)
def test_what_is_not_a_key_is_refused_without_quoting_it(pem: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_signing_key(pem, "service_account_key.private_key")

    assert refused.value.field == "service_account_key.private_key"
    assert pem.strip() == "" or pem[:30] not in refused.value.message


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each key load ran OpenSSL's full RSA check, which costs seconds for a large key."""
    ran: list[bool] = []
    load = serialization.load_pem_private_key

    def recording(data: bytes, password: bytes | None, **options: bool) -> object:
        ran.append(not options.get("unsafe_skip_rsa_key_validation", False))
        return load(data, password, **options)

    monkeypatch.setattr(serialization, "load_pem_private_key", recording)
    return ran


def test_an_rsa_key_past_4096_bits_is_refused_before_its_costly_check(checks: list[bool]) -> None:
    """Checking a 16,384-bit key took 33 s of CPU holding the GIL (an outside probe, 2026-11-30): its size is
    read first, unchecked."""
    with pytest.raises(InvalidInput, match="longer than 4096 bits") as refused:
        parse_signing_key(rsa_key(3, bits=OVERSIZED_BITS).private_pem, "private_key")

    assert refused.value.field == "private_key"
    assert checks == [False]


def test_a_modulus_that_is_not_its_two_half_sized_primes_is_refused_before_the_costly_check(
    checks: list[bool],
) -> None:
    """OpenSSL's check tests the primes before it multiplies them: beside a 4096-bit modulus, a Mersenne prime of
    4423 bits cost it 4.5 s holding the GIL, one of 86,243 bits (which a 16 KB PEM holds) hours (outside probe)."""
    mersenne = 2**2203 - 1
    pem = rsa_pem(n=(1 << 4095) | 12345, e=65537, d=5, p=mersenne, q=3)

    with pytest.raises(InvalidInput, match="two primes of half its size") as refused:
        parse_signing_key(pem, "private_key")

    assert refused.value.field == "private_key"
    assert checks == [False]


def test_a_public_exponent_past_2_to_the_32_is_refused(checks: list[bool]) -> None:
    """OpenSSL verifies each signature by raising it to ``e``: a 70,000-bit one made every signature 0.6 s."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    carmichael = math.lcm(numbers.p - 1, numbers.q - 1)
    e = next(e for e in range(2**40 + 1, 2**41, 2) if math.gcd(e, carmichael) == 1)
    pem = rsa_pem(n=numbers.p * numbers.q, e=e, d=pow(e, -1, carmichael), p=numbers.p, q=numbers.q)

    with pytest.raises(InvalidInput, match="public exponent"):
        parse_signing_key(pem, "private_key")

    assert checks == [False]


def test_a_key_is_checked_in_full_once_when_handed_over_and_signed_with_unchecked(checks: list[bool]) -> None:
    key = parse_signing_key(rsa_key().private_pem, "private_key")
    assert checks[-1] is True
    checks.clear()

    grant_assertion(issuer="robot@partner.example", audience="https://idp.example/token", key=key, now=NOW)

    assert checks == [False]


def test_a_stored_key_past_4096_bits_is_not_signed_with() -> None:
    """Kept before the limit: the grant's own key needs the connection made again, the app's is the app's fault."""
    oversized = SigningKey(Redacted(rsa_key(3, bits=OVERSIZED_BITS).private_pem), RS256, None)

    with pytest.raises(ReauthRequired) as own:
        grant_assertion(issuer="robot@partner.example", audience="https://idp.example/token", key=oversized, now=NOW)
    with pytest.raises(ClientRejected) as app:
        client_assertion(client_id="reporting", audience="https://idp.example/token", key=oversized, now=NOW)

    assert own.value.reason == app.value.reason == "signing_key_too_large"


def test_every_kind_reads_back_as_sealed() -> None:
    rsa = parse_signing_key(rsa_key().private_pem, "private_key", key_id="k")
    documents = [
        OAuth2Credentials(Redacted("at"), Redacted("rt"), Redacted("id")),
        OAuth2Credentials(None, Redacted("rt")),
        OAuth2Credentials(Redacted("at"), grant=ClientCredentialsGrant(scopes=("a",), audience="aud")),
        OAuth2Credentials(
            Redacted("at"),
            grant=ClientCredentialsGrant(
                client=ClientCredentials("id", None, private_key=rsa, auth_method=ClientAuthMethod.PRIVATE_KEY_JWT),
                resource="https://r",
                token_url="https://t",
            ),
        ),
        OAuth2Credentials(
            Redacted("at"),
            grant=ClientCredentialsGrant(
                client=ClientCredentials("id", Redacted("s"), auth_method=ClientAuthMethod.CLIENT_SECRET_POST)
            ),
        ),
        OAuth2Credentials(
            None, grant=JwtBearerGrant("sa@x", rsa, subject="u", audience="a", scopes=("s",), token_url="https://t")
        ),
    ]

    for credentials in documents:
        assert credentials_from_bytes(credentials_to_bytes(credentials)) == credentials


def test_a_grant_renewal_keeps_the_grant_and_drops_a_refresh_token_it_did_not_ask_for() -> None:
    from connvault.models import OAuth2Tokens

    grant = ClientCredentialsGrant(scopes=("a",))
    held = OAuth2Credentials(Redacted("old"), grant=grant)

    renewed = held.with_refreshed(OAuth2Tokens(Redacted("new"), refresh_token=Redacted("unwanted")))

    assert renewed == OAuth2Credentials(Redacted("new"), grant=grant)
    assert renewed.renewable
