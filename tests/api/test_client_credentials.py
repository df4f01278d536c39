"""Client-credentials connections (RFC 6749 §4.4) through the real handlers, against the demo provider."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pytest

from connvault.services.scheduler import SchedulerConfig, refresh_due
from connvault.services.tokens import IssuedCredential, get_token
from demo_provider import PRIVATE_KEY_JWT, DemoProvider, Fault
from tests.api.conftest import Answer, Api, connect_account, db_state, stored_connection
from tests.api.test_token_fetch import fetch, set_expiry
from tests.support.factories import owner
from tests.support.keys import KeyPair, ec_key, rsa_key

OWN_SECRET = "own-client-secret-4f9a2c"


def register_key(api: Api, pair: KeyPair) -> None:
    """The private key, and each line of its PEM, as secrets: a leak shows a line more likely than the whole."""
    api.secrets.add(pair.private_pem, pair.body, *pair.private_pem.splitlines())


def create(api: Api, **fields: Any) -> Answer:
    body = {"kind": "client_credentials", "provider": "demo", "end_user_id": "billing-service", **fields}
    return api.call("POST", "/connections", body=body)


def machine_calls(provider: DemoProvider) -> int:
    return provider.stats().token_calls.get("client_credentials", 0)


def connection_count(db) -> int:
    with owner(db) as connection:
        return connection.run("SELECT count(*) FROM connections")[0][0]


# -- the integration's client -----------------------------------------------------------------------------------


def test_the_first_token_comes_with_the_connection_and_the_token_route_serves_it(api: Api, provider) -> None:
    created = create(api, scopes=["read", "write"], audience="https://api.example.com", resource="https://r.example")

    assert created.status == 201, created.body
    connection = created.json()
    assert connection["kind"] == "client_credentials"
    assert connection["credential_type"] == "oauth2"
    assert connection["scopes"] == ["read", "write"]
    (grant,) = provider.stats().machine_grants
    assert (grant.subject, grant.scope) == ("demo-client", "read write")
    assert (grant.audience, grant.resource) == ("https://api.example.com", "https://r.example")
    assert grant.client_authentication == "client_secret_basic"
    served = fetch(api, connection["id"])
    assert served.status == 200, served.body
    assert served.headers["Cache-Control"] == "no-store"
    assert provider.access_token_is_active(served.json()["access_token"])
    assert machine_calls(provider) == 1
    assert set(served.json()) >= {"access_token", "expires_at", "token_type"}
    assert "refresh_token" not in served.body


def test_a_token_inside_the_margin_is_renewed_by_a_new_request_not_a_refresh(api: Api, provider, db) -> None:
    connection_id = create(api).json()["id"]
    first = fetch(api, connection_id).json()["access_token"]
    set_expiry(db, connection_id, 60)

    renewed = fetch(api, connection_id).json()["access_token"]

    assert renewed != first
    assert provider.access_token_is_active(renewed)
    assert provider.stats().token_calls == {"client_credentials": 2}


def test_min_ttl_longer_than_what_is_left_renews_first(api: Api, provider, db) -> None:
    connection_id = create(api).json()["id"]
    set_expiry(db, connection_id, 900)

    assert fetch(api, connection_id).json()["access_token"]
    assert machine_calls(provider) == 1
    assert fetch(api, connection_id, min_ttl="1800").status == 200
    assert machine_calls(provider) == 2


def test_thirty_concurrent_fetches_of_an_expired_token_cost_one_request(api: Api, provider, db, reconfigure) -> None:
    callers = 30
    reconfigure(db_max_overflow=callers + 10)
    connection_id = create(api).json()["id"]
    set_expiry(db, connection_id, -60)
    provider.configure(latency_seconds=0.3)
    start = threading.Barrier(callers)

    def call(_: int) -> IssuedCredential:
        start.wait()
        return get_token(api.tenant.tenant_id, UUID(connection_id))

    with ThreadPoolExecutor(max_workers=callers) as pool:
        issued = list(pool.map(call, range(callers)))

    stats = provider.stats()
    assert stats.token_calls == {"client_credentials": 2}  # creation, then one renewal for all thirty
    assert stats.max_in_flight == 1
    assert len({credential.credentials.access_token.reveal() for credential in issued}) == 1


def test_the_scheduler_renews_a_due_client_credentials_connection(api: Api, provider, db) -> None:
    connection_id = create(api).json()["id"]
    before = stored_connection(db, connection_id)
    set_expiry(db, connection_id, 120)

    report = refresh_due(remaining_ms=lambda: 300_000, config=SchedulerConfig(jitter_seconds=0))

    assert report.refreshed == 1
    after = stored_connection(db, connection_id)
    assert after.credentials.access_token.reveal() != before.credentials.access_token.reveal()
    assert after.credentials.grant == before.credentials.grant
    assert machine_calls(provider) == 2


def test_a_client_deleted_at_the_provider_sends_the_connection_to_needs_reauth(api: Api, provider, db) -> None:
    provider.add_client("reporting", secret=OWN_SECRET)
    api.secrets.add(OWN_SECRET)
    connection_id = create(api, client_id="reporting", client_secret=OWN_SECRET).json()["id"]
    set_expiry(db, connection_id, -1)
    provider.remove_client("reporting")

    refused = fetch(api, connection_id)

    assert refused.status == 409
    assert refused.json()["error"]["code"] == "needs_reauth"
    assert api.call("GET", f"/connections/{connection_id}").json()["last_error_code"] == "invalid_client"


def test_a_provider_down_when_renewing_serves_the_current_token_while_it_lasts(api: Api, provider, db) -> None:
    connection_id = create(api).json()["id"]
    current = fetch(api, connection_id).json()["access_token"]
    set_expiry(db, connection_id, 120)
    provider.inject(Fault.server_error())

    assert fetch(api, connection_id).json()["access_token"] == current


def test_the_integrations_client_refused_while_renewing_is_the_integrations_fault(api: Api, provider, db) -> None:
    connection_id = create(api).json()["id"]
    set_expiry(db, connection_id, -1)
    api.secrets.add("demo-secret-rotated-at-the-provider")
    provider.configure(client_secret="demo-secret-rotated-at-the-provider")

    refused = fetch(api, connection_id)

    assert refused.status == 409, refused.body
    assert refused.json()["error"]["code"] == "integration_invalid_credentials"
    assert api.call("GET", "/integrations/demo").json()["status"] == "invalid_credentials"
    assert api.call("GET", f"/connections/{connection_id}").json()["status"] == "active"  # its grant is sound
    calls = machine_calls(provider)
    assert fetch(api, connection_id).status == 409
    assert machine_calls(provider) == calls  # nobody asks the provider again until the secret is replaced


# -- the connection's own client ----------------------------------------------------------------------------------


def test_an_own_client_with_a_secret_can_choose_client_secret_post(api: Api, provider, db) -> None:
    provider.add_client("reporting", secret=OWN_SECRET)
    api.secrets.add(OWN_SECRET)

    created = create(
        api, client_id="reporting", client_secret=OWN_SECRET, token_endpoint_auth_method="client_secret_post"
    )

    assert created.status == 201, created.body
    (grant,) = provider.stats().machine_grants
    assert (grant.subject, grant.client_authentication) == ("reporting", "client_secret_post")
    grant_held = stored_connection(db, created.json()["id"]).credentials.grant
    assert grant_held.client.client_id == "reporting"
    assert OWN_SECRET not in created.body
    assert OWN_SECRET not in api.call("GET", f"/connections/{created.json()['id']}").body


def test_a_refused_integration_does_not_hold_back_a_connection_with_its_own_client(api: Api, provider, db) -> None:
    # Given a connection with its own client and one on the tenant's integration
    provider.add_client("reporting", secret=OWN_SECRET)
    api.secrets.add(OWN_SECRET)
    own = create(api, client_id="reporting", client_secret=OWN_SECRET).json()["id"]
    shared = create(api, end_user_id="shared-service").json()["id"]
    before = stored_connection(db, own).credentials.access_token.reveal()
    # And the provider now refusing the integration's client (found by a fetch)
    api.secrets.add("demo-secret-rotated-at-the-provider")
    provider.configure(client_secret="demo-secret-rotated-at-the-provider")
    set_expiry(db, shared, -1)
    assert fetch(api, shared).json()["error"]["code"] == "integration_invalid_credentials"

    # When both are due and the scheduler runs
    set_expiry(db, own, 120)
    set_expiry(db, shared, 120)
    report = refresh_due(remaining_ms=lambda: 300_000, config=SchedulerConfig(jitter_seconds=0))

    # Then the one with its own client was renewed, and the other waits for the app's new credentials
    assert (report.refreshed, report.claimed) == (1, 1)
    assert stored_connection(db, own).credentials.access_token.reveal() != before


@pytest.mark.parametrize("key", [rsa_key, ec_key], ids=["RS256", "ES256"])
def test_an_own_client_can_authenticate_with_a_private_key_jwt(api: Api, provider, db, key) -> None:
    pair = key()
    register_key(api, pair)
    provider.add_client("signer", public_key_pem=pair.public_pem)

    created = create(api, client_id="signer", private_key=pair.private_pem, key_id="key-1")
    assert created.status == 201, created.body
    connection_id = created.json()["id"]
    set_expiry(db, connection_id, -1)
    renewed = fetch(api, connection_id)

    assert renewed.status == 200, renewed.body
    assert [grant.client_authentication for grant in provider.stats().machine_grants] == [PRIVATE_KEY_JWT] * 2
    for answer in (created, renewed, api.call("GET", f"/connections/{connection_id}"), api.call("GET", "/connections")):
        assert pair.body[:64] not in answer.body


def test_a_token_url_of_its_own_needs_the_connections_own_client(api: Api, provider) -> None:
    refused = create(api, token_url=f"{provider.base_url}/token")

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "token_url"
    provider.add_client("reporting", secret=OWN_SECRET)
    api.secrets.add(OWN_SECRET)
    created = create(api, client_id="reporting", client_secret=OWN_SECRET, token_url=f"{provider.base_url}/token")
    assert created.status == 201, created.body


def test_deleting_revokes_the_token_as_the_connections_own_client(api: Api, provider) -> None:
    provider.add_client("reporting", secret=OWN_SECRET)
    api.secrets.add(OWN_SECRET)
    connection_id = create(api, client_id="reporting", client_secret=OWN_SECRET).json()["id"]
    token = fetch(api, connection_id).json()["access_token"]

    deleted = api.call("DELETE", f"/connections/{connection_id}")

    assert deleted.json()["revocation"] == "succeeded"
    assert token in provider.stats().revoked


def test_a_token_endpoint_of_its_own_keeps_its_secret_from_the_providers_revocation_endpoint(
    api: Api, provider
) -> None:
    """Its tokens came from its own server and its secret was given for that server alone: deleting it revokes
    nowhere (an outside probe on 2026-11-30 saw the secret sent to the catalog provider's endpoint)."""
    provider.add_client("reporting", secret=OWN_SECRET)  # the catalog's server would take it, and record the token
    api.secrets.add(OWN_SECRET)
    with DemoProvider() as own_server:
        own_server.add_client("reporting", secret=OWN_SECRET)
        made = create(api, client_id="reporting", client_secret=OWN_SECRET, token_url=f"{own_server.base_url}/token")
        assert made.status == 201, made.body
        fetch(api, made.json()["id"])

        deleted = api.call("DELETE", f"/connections/{made.json()['id']}")

    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "not_supported"
    assert provider.stats().revoked == frozenset()


def test_a_reconnect_over_a_token_endpoint_of_its_own_revokes_the_replaced_grant_nowhere(api: Api, provider) -> None:
    """An end user connecting the same account replaces the grant; the replaced one came from the connection's own
    server, so the catalog provider's revocation endpoint is not sent its token (a second probe, 2026-11-30)."""
    api.secrets.add(OWN_SECRET)
    with DemoProvider() as own_server:
        own_server.add_client("reporting", secret=OWN_SECRET)
        made = create(api, client_id="reporting", client_secret=OWN_SECRET, token_url=f"{own_server.base_url}/token")
        assert made.status == 201, made.body
        fetch(api, made.json()["id"])

        reconnected = connect_account(api, end_user_id="billing-service")

    assert str(reconnected) == made.json()["id"]
    assert provider.stats().revoked == frozenset()


# -- refusals: nothing stored ------------------------------------------------------------------------------------


def test_a_refused_client_is_422_naming_the_field_and_stores_nothing(api: Api, provider, db) -> None:
    provider.add_client("reporting", secret=OWN_SECRET)
    wrong = "not-the-secret-1d8e2b"
    api.secrets.add(OWN_SECRET, wrong)
    before = db_state(db)

    refused = create(api, client_id="reporting", client_secret=wrong)

    assert refused.status == 422
    assert refused.json()["error"] == {
        "code": "credentials_refused",
        "message": "the provider refused the client_secret (invalid_client); nothing was stored",
        "field": "client_secret",
    }
    assert db_state(db) == before


def test_a_provider_down_at_creation_is_503_and_stores_nothing(api: Api, provider, db) -> None:
    provider.inject(Fault.server_error())

    answer = create(api)

    assert answer.status == 503
    assert "Retry-After" in answer.headers
    assert connection_count(db) == 0


def test_a_second_connection_for_the_same_account_is_409(api: Api, provider) -> None:
    assert create(api).status == 201

    again = create(api)

    assert again.status == 409
    assert machine_calls(provider) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"client_secret": OWN_SECRET}, "client_id"),
        ({"client_id": "reporting"}, "client_secret"),
        ({"client_id": "reporting", "client_secret": OWN_SECRET, "private_key": "x" * 40}, "client_secret"),
        (
            {"client_id": "reporting", "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
            "private_key",
        ),
        (
            {"client_id": "reporting", "client_secret": OWN_SECRET, "token_endpoint_auth_method": "private_key_jwt"},
            "private_key",
        ),
        ({"client_id": "reporting", "client_secret": OWN_SECRET, "key_id": "k1"}, "key_id"),
        ({"scopes": [f"s{n}" for n in range(101)]}, "body.scopes"),
        ({"scopes": ["has space"]}, "scopes"),
        ({"resource": "ftp://files.example.com"}, "resource"),
        ({"token_endpoint_auth_method": "tls_client_auth"}, "body.token_endpoint_auth_method"),
        ({"client_id": "reporting", "client_secret": OWN_SECRET, "token_url": "http://10.0.0.1/token"}, "token_url"),
        ({"client_id": "reporting", "client_secret": OWN_SECRET, "token_url": "https://169.254.169.254"}, "token_url"),
        ({"surprise": True}, "body"),  # an unknown key is never named by its own text
        ({"kind": "password"}, "body.kind"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_calls_no_provider(api: Api, provider, db, fields, field) -> None:
    api.secrets.add(OWN_SECRET)

    refused = create(api, **fields)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == field
    assert provider.stats().token_calls == {}
    assert connection_count(db) == 0
