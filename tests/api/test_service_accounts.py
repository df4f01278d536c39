"""Service accounts (RFC 7523 §2.1 JWT-bearer grants) through the real handlers, against the demo provider, which
checks each assertion's signature, issuer, audience and times as a real server does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from demo_provider import JWT_BEARER, DemoProvider
from tests.api.conftest import Answer, Api, db_state, stored_connection
from tests.api.test_client_credentials import register_key, set_expiry
from tests.support.factories import owner
from tests.support.keys import KeyPair, ec_key, ed25519_key, encrypted_pem, p384_key, rsa_key

SERVICE_ACCOUNT = "reports@acme-project.iam.gserviceaccount.com"


def key_file(provider: DemoProvider, pair: KeyPair, **overrides: Any) -> dict[str, Any]:
    """A Google service-account JSON key as the console hands it out, for the demo provider's token endpoint."""
    return {
        "type": "service_account",
        "project_id": "acme-project",
        "private_key_id": "4d1b2c3e5f",
        "private_key": pair.private_pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "104885920347281038471",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"{provider.base_url}/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
        **overrides,
    }


def create(api: Api, **fields: Any) -> Answer:
    body = {"kind": "jwt_bearer", "provider": "demo", "end_user_id": "reporting", **fields}
    return api.call("POST", "/connections", body=body)


def grants(provider: DemoProvider) -> list:
    return [grant for grant in provider.stats().machine_grants if grant.grant_type == JWT_BEARER]


@pytest.fixture
def google_key(api: Api, provider: DemoProvider) -> KeyPair:
    pair = rsa_key()
    register_key(api, pair)
    provider.add_service_account(SERVICE_ACCOUNT, pair.public_pem, key_id="4d1b2c3e5f")
    return pair


def test_a_google_key_file_buys_tokens_with_signed_assertions(api: Api, provider, google_key, db) -> None:
    created = create(
        api, service_account_key=key_file(provider, google_key), scopes=["read", "admin"], subject="ada@acme.example"
    )

    assert created.status == 201, created.body
    body = created.json()
    assert (body["kind"], body["credential_type"], body["scopes"]) == ("jwt_bearer", "oauth2", ["read", "admin"])
    (grant,) = grants(provider)
    assert (grant.subject, grant.scope, grant.acting_for) == (SERVICE_ACCOUNT, "read admin", "ada@acme.example")
    served = api.call("GET", f"/connections/{body['id']}/token")
    assert served.status == 200, served.body
    assert provider.access_token_is_active(served.json()["access_token"])
    answered = served.json()
    assert answered["credential_type"] == "oauth2"
    assert (answered["api_key"], answered["username"], answered["password"]) == (None, None, None)
    assert not [name for name in answered if "private" in name or "secret" in name or "assertion" in name]
    held = stored_connection(db, body["id"]).credentials.grant
    assert (held.issuer, held.key.algorithm, held.key.key_id) == (SERVICE_ACCOUNT, "RS256", "4d1b2c3e5f")


def test_the_key_is_stored_sealed(api: Api, provider, google_key, db) -> None:
    connection_id = create(api, service_account_key=key_file(provider, google_key)).json()["id"]

    with owner(db) as connection:
        (sealed,) = connection.run("SELECT credentials FROM connections WHERE id = CAST(:i AS uuid)", i=connection_id)[
            0
        ]

    assert b"PRIVATE KEY" not in sealed
    for line in google_key.private_pem.splitlines()[1:-1]:
        assert line.encode() not in sealed


def test_the_key_never_leaves_the_vault(api: Api, provider, google_key, db) -> None:
    created = create(api, service_account_key=key_file(provider, google_key))
    connection_id = created.json()["id"]
    set_expiry(db, connection_id, -1)

    answers = [
        created,
        api.call("GET", f"/connections/{connection_id}"),
        api.call("GET", "/connections"),
        api.call("GET", f"/connections/{connection_id}/token"),
        api.call("PATCH", f"/connections/{connection_id}", body={"alias": "main"}),
        api.call("DELETE", f"/connections/{connection_id}"),
    ]

    for answer in answers:
        assert answer.status < 300, answer.body
        for line in google_key.private_pem.splitlines()[1:-1]:
            assert line not in answer.body
    assert api.call("GET", "/connections").json()["items"] == []


def test_an_es256_key_given_as_issuer_and_private_key(api: Api, provider) -> None:
    pair = ec_key()
    register_key(api, pair)
    provider.add_service_account("robot@partner.example", pair.public_pem)

    created = create(api, issuer="robot@partner.example", private_key=pair.private_pem, scopes=["read"])

    assert created.status == 201, created.body
    (grant,) = grants(provider)
    assert (grant.subject, grant.acting_for) == ("robot@partner.example", None)


def test_an_expired_token_is_bought_again_once_for_many_callers(api: Api, provider, google_key, db) -> None:
    connection_id = create(api, service_account_key=key_file(provider, google_key)).json()["id"]
    set_expiry(db, connection_id, 30)

    first = api.call("GET", f"/connections/{connection_id}/token", query={"min_ttl": "600"})
    second = api.call("GET", f"/connections/{connection_id}/token", query={"min_ttl": "600"})

    assert first.json()["access_token"] == second.json()["access_token"]
    assert len(grants(provider)) == 2


def test_a_key_deleted_at_the_provider_sends_the_connection_to_needs_reauth(api: Api, provider, google_key, db) -> None:
    connection_id = create(api, service_account_key=key_file(provider, google_key)).json()["id"]
    provider.remove_service_account(SERVICE_ACCOUNT)
    set_expiry(db, connection_id, -1)

    refused = api.call("GET", f"/connections/{connection_id}/token")

    assert refused.status == 409
    assert refused.json()["error"]["code"] == "needs_reauth"
    assert api.call("GET", f"/connections/{connection_id}").json()["last_error_code"] == "invalid_grant"


def test_a_key_the_provider_does_not_know_is_422_and_stores_nothing(api: Api, provider, db) -> None:
    pair = rsa_key(1)
    register_key(api, pair)
    before = db_state(db)

    refused = create(api, service_account_key=key_file(provider, pair))

    assert refused.status == 422
    assert refused.json()["error"]["code"] == "credentials_refused"
    assert refused.json()["error"]["field"] == "service_account_key"
    assert db_state(db) == before


def test_an_assertion_for_another_audience_is_refused(api: Api, provider, google_key) -> None:
    refused = create(api, service_account_key=key_file(provider, google_key), audience="https://elsewhere.example")

    assert refused.status == 422
    assert refused.json()["error"]["field"] == "service_account_key"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "service_account_key.private_key",
        ),
        ({"private_key": "not a pem at all"}, "service_account_key.private_key"),
        ({"type": "authorized_user"}, "service_account_key.type"),
        ({"client_email": None}, "body.service_account_key.client_email"),
        ({"private_key": None}, "body.service_account_key.private_key"),
        ({"token_uri": "http://169.254.169.254/token"}, "service_account_key.token_uri"),
        ({"token_uri": "https://other.example/token", "__token_url": "https://one.example/token"}, "token_url"),
    ],
)
def test_a_broken_key_file_is_400_naming_the_field(api: Api, provider, change, field) -> None:
    pair = rsa_key()
    register_key(api, pair)
    token_url = change.pop("__token_url", None)
    document = {key: value for key, value in key_file(provider, pair, **change).items() if value is not None}
    extra = {"token_url": token_url} if token_url else {}

    refused = create(api, service_account_key=document, **extra)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == field
    assert provider.stats().token_calls == {}


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: rsa_key(2, bits=1024), "shorter than 2048 bits"),
        (lambda: rsa_key(3, bits=4352), "longer than 4096 bits"),
        (ed25519_key, "must be an RSA (RS256) or EC P-256 (ES256) private key"),
        (p384_key, "a curve other than P-256"),
    ],
    ids=["rsa-1024", "rsa-4352", "ed25519", "p-384"],
)
def test_keys_it_cannot_sign_with_are_400_on_private_key(api: Api, provider, make, problem) -> None:
    pair = make()
    register_key(api, pair)

    refused = create(api, issuer="robot@partner.example", private_key=pair.private_pem)

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "private_key"
    assert problem in refused.json()["error"]["message"]


def test_an_encrypted_key_is_400_and_its_password_never_asked_for(api: Api, provider) -> None:
    pair = rsa_key()
    register_key(api, pair)
    locked = encrypted_pem(pair)
    api.secrets.add(*locked.splitlines()[1:-1])

    refused = create(api, issuer="robot@partner.example", private_key=locked)

    assert refused.status == 400
    assert refused.json()["error"] == {
        "code": "validation_error",
        "message": "private_key is encrypted; give the key unencrypted",
        "field": "private_key",
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "issuer"),
        ({"issuer": "robot@partner.example"}, "private_key"),
        (
            {
                "issuer": "robot@partner.example",
                "private_key": "x",
                "service_account_key": {"client_email": "a", "private_key": "b"},
            },
            "issuer",
        ),
        ({"issuer": "robot@partner.example", "private_key": "x" * 16385}, "body.private_key"),
        ({"issuer": "robot@partner.example", "private_key": "x", "subject": "a" * 513}, "body.subject"),
    ],
)
def test_missing_or_doubled_identity_is_400_naming_the_field(api: Api, provider, fields, field) -> None:
    refused = create(api, **fields)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == field
    assert connection_count_of(api) == 0


def connection_count_of(api: Api) -> int:
    return len(api.call("GET", "/connections").json()["items"])


def test_the_key_file_may_be_sent_as_downloaded(api: Api, provider, google_key) -> None:
    """Every field Google puts in the file is accepted (and all but four ignored)."""
    document = json.loads(json.dumps(key_file(provider, google_key)))

    assert create(api, service_account_key=document).status == 201
