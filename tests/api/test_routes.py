"""The management API (issue 5), route by route and error code by error code, through the real handlers."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connvault.db.uow import UnitOfWork
from connvault.services import tenants
from demo_provider import Fault
from devserver.demo_setup import DEMO_RETURN_URL
from devserver.events import authorizer_event, http_event
from devserver.handlers import InvocationContext, load_handler
from tests.api.conftest import (
    Answer,
    Api,
    connect_account,
    db_state,
    stored_connection,
)
from tests.support.factories import owner

NOBODYS = "5b0c8f1e-2d4a-4e6b-9c7d-0a1b2c3d4e5f"
"""A connection id nobody has (fixed: parameter ids must be the same in every xdist worker)."""
OVERFLOWING_CURSOR = base64.urlsafe_b64encode(f"0001-01-01T00:00:00+01:00|{NOBODYS}".encode()).decode().rstrip("=")
OPENAI_KEY = "sk-test-" + "k" * 40
TWILIO_PASSWORD = "twilio-" + "p" * 30


@pytest.fixture
def static_secrets(secrets) -> None:
    secrets.add(OPENAI_KEY, TWILIO_PASSWORD)


def assert_error(answer: Answer, status: int, code: str, field: str | None = None) -> dict:
    assert answer.status == status, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    error = answer.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    return error


def create_api_key_connection(api: Api, end_user_id: str = "user-1", **extra: object) -> dict:
    body = {"provider": "openai", "end_user_id": end_user_id, "api_key": OPENAI_KEY, **extra}
    answer = api.call("POST", "/connections", body=body)
    assert answer.status == 201, answer.body
    return answer.json()


# -- 400 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "field"),
    [
        ("POST", "/connections", None, "{not json", "body"),
        ("POST", "/connections", None, None, "body"),
        # an unknown key is the client's own text: the field named is where it was found (issue 13.8)
        ("POST", "/connections", None, {"provider": "openai", "end_user_id": "u", "surprise": 1}, "body"),
        ("POST", "/connections", None, {"provider": "Not A Slug", "end_user_id": "u"}, "body.provider"),
        ("POST", "/connect-sessions", None, {"provider": "demo"}, "body.end_user_id"),
        ("GET", "/connections/not-a-uuid", None, None, "path.connection_id"),
        ("PATCH", "/connections/not-a-uuid", None, {"alias": "x"}, "path.connection_id"),
        ("DELETE", "/connections/not-a-uuid", None, None, "path.connection_id"),
        ("GET", "/connections/not-a-uuid/token", None, None, "path.connection_id"),
        ("GET", f"/connections/{NOBODYS}/token", {"min_ttl": "-1"}, None, "query.min_ttl"),
        ("GET", f"/connections/{NOBODYS}/token", {"force_refresh": "perhaps"}, None, "query.force_refresh"),
        ("GET", "/connections", {"limit": "0"}, None, "query.limit"),
        ("GET", "/connections", {"limit": "many"}, None, "query.limit"),
        ("GET", "/connections", {"status": "sleeping"}, None, "query.status"),
        ("GET", "/connections", {"cursor": "bm90IGEgY3Vyc29y"}, None, "cursor"),
        ("GET", "/connections", {"unused_since": "yesterday"}, None, "query.unused_since"),
        ("GET", "/connections", {"unused_since": "2026-01-31T00:00:00"}, None, "unused_since"),
        # issue 13.1: a time the driver overflowed converting, mid-statement, poisoning the pooled connection
        ("GET", "/connections", {"cursor": OVERFLOWING_CURSOR}, None, "cursor"),
        ("PUT", "/integrations/Not!A!Slug", None, {"client_id": "x"}, "path.provider"),
        ("PUT", "/integrations/demo", None, {"client_id": ""}, "body.client_id"),
    ],
)
def test_invalid_requests_are_400_naming_the_field(
    api: Api, db, method: str, path: str, query: dict | None, body: object, field: str | None
) -> None:
    before = db_state(db)

    error = assert_error(api.call(method, path, query=query, body=body), 400, "validation_error")

    if field is not None:
        assert error["field"] == field
    assert db_state(db) == before


LAX_RT = "rt-lax-types-0001"
LAX_BODIES = [
    # (method, path, body, field, value sent): the outside probe's coercions, each a 400 now
    (
        "POST",
        "/connections",
        {"kind": "imported", "provider": "demo", "end_user_id": "u", "refresh_token": LAX_RT},
        "verify",
        "off",
    ),
    (
        "POST",
        "/connections/import",
        {"items": [{"provider": "demo", "end_user_id": "u", "refresh_token": LAX_RT}]},
        "verify",
        "n",
    ),
    (
        "POST",
        "/connect-sessions",
        {"provider": "demo", "end_user_id": "u", "return_url": DEMO_RETURN_URL},
        "require_confirmation",
        "yes",
    ),
    (
        "POST",
        "/connect-sessions",
        {"provider": "demo", "end_user_id": "u", "return_url": DEMO_RETURN_URL},
        "require_confirmation",
        1,
    ),
    ("POST", "/webhooks", {"url": "https://hooks.example.com/in", "event_types": ["connection.created"]}, "enabled", 1),
    ("PATCH", f"/webhooks/{NOBODYS}", {}, "enabled", "on"),
    ("POST", f"/webhooks/{NOBODYS}/rotate-secret", {}, "overlap_seconds", "60"),
    ("POST", f"/webhooks/{NOBODYS}/rotate-secret", {}, "overlap_seconds", True),
    ("POST", f"/webhooks/{NOBODYS}/rotate-secret", {}, "overlap_seconds", 60.0),
]
CUSTOM = {"authorization_url": "https://login.example.com/authorize", "token_url": "https://login.example.com/token"}
LAX_PROVIDER_FIELDS = [("pkce", "false"), ("require_iss", 0), ("refresh_margin_seconds", "60")]


@pytest.mark.parametrize(("method", "path", "body", "field", "value"), LAX_BODIES)
def test_json_booleans_and_integers_take_no_other_type(
    api: Api, db, method: str, path: str, body: dict, field: str, value: object
) -> None:
    api.secrets.add(LAX_RT)
    before = db_state(db)

    answer = api.call(method, path, body={**body, field: value})

    assert_error(answer, 400, "validation_error", f"body.{field}")
    assert json.dumps(value) not in answer.body  # the input is never echoed
    assert db_state(db) == before


@pytest.mark.parametrize(("field", "value"), LAX_PROVIDER_FIELDS)
def test_a_custom_providers_switches_take_json_booleans_and_integers_only(
    api: Api, db, field: str, value: object
) -> None:
    before = db_state(db)

    body = {"client_id": "c", "custom_provider": {**CUSTOM, field: value}}
    answer = api.call("PUT", "/integrations/lax-custom", body=body)

    assert_error(answer, 400, "validation_error", f"body.custom_provider.{field}")
    assert db_state(db) == before


@pytest.mark.parametrize(
    "content_type",
    ["0", "text/plain", "application/xml", "application/json; charset=utf-16", 'application/json; Charset="latin1"'],
)
def test_a_body_that_is_not_json_by_its_content_type_is_415_and_writes_nothing(api: Api, db, content_type: str) -> None:
    before = db_state(db)
    event = http_event(
        "POST",
        "/connect-sessions",
        body='{"provider": "demo", "end_user_id": "u"}',
        headers={"content-type": content_type},
        tenant_id=str(api.tenant.tenant_id),
    )

    error = assert_error(api.invoke("api", event), 415, "unsupported_media_type")

    assert error["field"] == "headers.content-type"
    assert db_state(db) == before


@pytest.mark.parametrize(
    "content_type",
    ["Application/JSON", "application/JSON; charset=utf-8", "APPLICATION/JSON", 'application/json; charset="UTF-8"'],
)
def test_a_json_media_type_in_any_case_is_json(api: Api, content_type: str) -> None:
    """Media types are case-insensitive (RFC 9110 §8.3.1): an outside probe got 415 for ``Application/JSON``."""
    event = http_event(
        "POST",
        "/connect-sessions",
        body=json.dumps({"provider": "demo", "end_user_id": "u", "return_url": DEMO_RETURN_URL}),
        headers={"content-type": content_type},
        tenant_id=str(api.tenant.tenant_id),
    )

    answer = api.invoke("api", event)

    assert answer.status == 201, answer.body


def test_validation_errors_never_echo_the_rejected_value(api: Api, secrets) -> None:
    secret = "sk-echo-" + "e" * 40
    secrets.add(secret)

    answer = api.call("POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": [secret]})

    assert_error(answer, 400, "validation_error", "body.api_key")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "github", "end_user_id": "u", "api_key": OPENAI_KEY}, "provider"),
        ({"provider": "openai", "end_user_id": "u", "username": "me", "password": TWILIO_PASSWORD}, "api_key"),
        ({"provider": "twilio", "end_user_id": "u", "api_key": OPENAI_KEY}, "username"),
        ({"provider": "nobody-knows", "end_user_id": "u", "api_key": OPENAI_KEY}, "provider"),
        # RFC 7617: HTTP Basic sends user:password, so a colon in the username would move the rest into the password.
        ({"provider": "twilio", "end_user_id": "u", "username": "AC1:23", "password": TWILIO_PASSWORD}, "username"),
    ],
)
def test_static_credentials_must_fit_the_providers_auth_type(api: Api, static_secrets, body: dict, field: str) -> None:
    assert_error(api.call("POST", "/connections", body=body), 400, "validation_error", field)


# -- 401 ------------------------------------------------------------------------------------------------


def test_the_authorizer_refuses_missing_malformed_unknown_and_revoked_keys(api: Api) -> None:
    key = api.tenant.api_key.reveal()
    key_id = key.split("_")[1]
    unknown = "cv_" + "z" * 16 + "_" + key.split("_", 2)[2]

    assert api.authorize(f"Bearer {key}") == {"isAuthorized": True, "context": {"tenant_id": str(api.tenant.tenant_id)}}
    for header in (None, "", "Bearer", f"Basic {key}", "Bearer cv_short", f"Bearer {key}x", f"Bearer {unknown}"):
        assert api.authorize(header) == {"isAuthorized": False}, header

    tenants.revoke_api_key(UnitOfWork(api.tenant.tenant_id), key_id)

    assert api.authorize(f"Bearer {key}") == {"isAuthorized": False}
    assert api.call("GET", "/connections").status == 401


def test_the_authorizer_reads_the_header_as_sam_local_spells_it(api: Api) -> None:
    # API Gateway lowercases header names; `sam local start-api` passes "Authorization" as Werkzeug spells it.
    event = authorizer_event(None)
    event["headers"]["Authorization"] = f"Bearer {api.tenant.api_key.reveal()}"

    answer = load_handler("authorizer")(event, InvocationContext())

    assert answer == {"isAuthorized": True, "context": {"tenant_id": str(api.tenant.tenant_id)}}


def test_a_second_key_keeps_working_when_the_first_is_revoked(api: Api, secrets) -> None:
    second = tenants.create_api_key(UnitOfWork(api.tenant.tenant_id)).plaintext.reveal()
    secrets.add(second)

    tenants.revoke_api_key(UnitOfWork(api.tenant.tenant_id), api.tenant.api_key.reveal().split("_")[1])

    assert api.call("GET", "/connections", key=second).status == 200
    assert api.call("GET", "/connections").status == 401


def test_a_request_without_authorizer_context_is_401(api: Api) -> None:
    assert_error(api.invoke("api", http_event("GET", "/connections")), 401, "unauthorized")


# -- 404 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("PATCH", "", {"alias": "x"}), ("DELETE", "", None), ("GET", "/token", None)],
)
def test_unknown_connection_is_404(api: Api, method: str, suffix: str, body: object) -> None:
    missing = uuid.uuid4()

    error = assert_error(api.call(method, f"/connections/{missing}{suffix}", body=body), 404, "not_found")

    assert error["message"] == f"connection {missing} not found"


def test_unknown_route_is_404(api: Api) -> None:
    assert_error(api.call("GET", "/nowhere"), 404, "not_found")


# -- connections: create, read, list, edit --------------------------------------------------------------


def test_api_key_and_basic_connections_are_stored_and_only_the_token_route_returns_them(
    api: Api, static_secrets
) -> None:
    openai = create_api_key_connection(api, metadata={"team": "ml"})
    twilio = api.call(
        "POST",
        "/connections",
        body={"provider": "twilio", "end_user_id": "user-1", "username": "AC123", "password": TWILIO_PASSWORD},
    )
    assert twilio.status == 201, twilio.body
    twilio_id = twilio.json()["id"]

    assert openai["credential_type"] == "api_key"
    assert openai["status"] == "active"
    assert openai["metadata"] == {"team": "ml"}
    key = api.call("GET", f"/connections/{openai['id']}/token")
    assert key.status == 200
    assert key.headers["Cache-Control"] == "no-store"
    assert key.json() == {
        "connection_id": openai["id"],
        "credential_type": "api_key",
        "api_key": OPENAI_KEY,
        "access_token": None,
        "token_type": None,
        "expires_at": None,
        "min_ttl_met": None,
        "scopes": [],
        "username": None,
        "password": None,
    }
    basic = api.call("GET", f"/connections/{twilio_id}/token").json()
    assert (basic["credential_type"], basic["username"], basic["password"]) == ("basic", "AC123", TWILIO_PASSWORD)

    everything_else = [
        twilio,
        api.call("GET", "/connections"),
        api.call("GET", f"/connections/{openai['id']}"),
        api.call("GET", f"/connections/{twilio_id}"),
        api.call("PATCH", f"/connections/{twilio_id}", body={"alias": "main"}),
        api.call("GET", "/connections", query={"provider": "openai"}),
    ]
    for answer in everything_else:
        assert answer.status in (200, 201), answer.body
        assert OPENAI_KEY not in answer.body
        assert TWILIO_PASSWORD not in answer.body
    assert OPENAI_KEY not in json.dumps(openai)


def test_duplicate_static_connection_is_a_conflict(api: Api, static_secrets) -> None:
    create_api_key_connection(api)

    again = api.call(
        "POST", "/connections", body={"provider": "openai", "end_user_id": "user-1", "api_key": OPENAI_KEY}
    )

    assert_error(again, 409, "conflict")


def test_patch_changes_alias_and_metadata(api: Api, static_secrets) -> None:
    created = create_api_key_connection(api, metadata={"a": 1})
    path = f"/connections/{created['id']}"

    renamed = api.call("PATCH", path, body={"alias": "primary"})
    assert renamed.status == 200, renamed.body
    assert (renamed.json()["alias"], renamed.json()["metadata"]) == ("primary", {"a": 1})

    retagged = api.call("PATCH", path, body={"metadata": {"b": [1, 2]}})
    assert (retagged.json()["alias"], retagged.json()["metadata"]) == ("primary", {"b": [1, 2]})
    assert api.call("GET", path).json()["metadata"] == {"b": [1, 2]}


def test_patch_to_an_alias_already_taken_is_a_conflict_and_changes_nothing(api: Api, db, static_secrets) -> None:
    create_api_key_connection(api, alias="taken")
    other = create_api_key_connection(api, alias="free")
    before = db_state(db)

    answer = api.call("PATCH", f"/connections/{other['id']}", body={"alias": "taken"})

    assert_error(answer, 409, "conflict")
    assert db_state(db) == before


def test_patch_with_oversized_metadata_is_400(api: Api, static_secrets) -> None:
    created = create_api_key_connection(api)

    answer = api.call("PATCH", f"/connections/{created['id']}", body={"metadata": {"blob": "x" * 20_000}})

    assert_error(answer, 400, "validation_error", "metadata")


def test_keyset_pagination_walks_every_connection_once_in_creation_order(api: Api, static_secrets) -> None:
    created = [create_api_key_connection(api, end_user_id=f"user-{n}")["id"] for n in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0

    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", "/connections", query=query)
        assert page.status == 200, page.body
        seen += [item["id"] for item in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert seen == created
    assert pages == 3


def test_list_filters_by_provider_end_user_and_status(api: Api, db, provider, static_secrets) -> None:
    key_id = create_api_key_connection(api, end_user_id="alice")["id"]
    oauth_id = connect_account(api, end_user_id="bob")

    def ids(**query: str) -> list[str]:
        answer = api.call("GET", "/connections", query=query)
        assert answer.status == 200, answer.body
        return [item["id"] for item in answer.json()["items"]]

    assert ids(provider="openai") == [key_id]
    assert ids(provider="demo") == [oauth_id]
    assert ids(provider="unknown-provider") == []
    assert ids(end_user_id="bob") == [oauth_id]
    assert sorted(ids(status="active")) == sorted([key_id, oauth_id])
    assert ids(status="needs_reauth") == []


def iso_days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def test_list_keeps_the_idle_connections_with_unused_since(api: Api, db, static_secrets) -> None:
    used = create_api_key_connection(api, end_user_id="alice")["id"]
    idle = create_api_key_connection(api, end_user_id="bob")["id"]
    never = create_api_key_connection(api, end_user_id="carol")["id"]
    with owner(db) as sql:
        sql.run("UPDATE connections SET last_used_at = now() WHERE id = :c", c=used)
        sql.run("UPDATE connections SET last_used_at = now() - interval '40 days' WHERE id = :c", c=idle)

    answer = api.call("GET", "/connections", query={"unused_since": "2000-01-01T00:00:00Z"})
    recent = api.call("GET", "/connections", query={"unused_since": "2100-01-01T00:00:00+02:00"})
    month = api.call("GET", "/connections", query={"unused_since": iso_days_ago(30)})

    assert [item["id"] for item in answer.json()["items"]] == [never]
    assert [item["id"] for item in recent.json()["items"]] == [used, idle, never]
    assert [item["id"] for item in month.json()["items"]] == [idle, never]


# -- delete and revocation ------------------------------------------------------------------------------


def test_delete_revokes_the_refresh_token_at_the_provider(api: Api, db, provider) -> None:
    connection_id = connect_account(api)
    refresh_token = stored_connection(db, connection_id).refresh_token.reveal()

    deleted = api.call("DELETE", f"/connections/{connection_id}")

    assert deleted.status == 200, deleted.body
    assert deleted.json() == {"id": connection_id, "deleted": True, "revocation": "succeeded"}
    assert refresh_token in provider.stats().revoked
    assert_error(api.call("GET", f"/connections/{connection_id}"), 404, "not_found")
    assert_error(api.call("DELETE", f"/connections/{connection_id}"), 404, "not_found")


def test_delete_goes_ahead_when_revocation_fails(api: Api, db, provider) -> None:
    connection_id = connect_account(api)
    provider.inject(Fault.server_error(), path="/revoke")

    deleted = api.call("DELETE", f"/connections/{connection_id}")

    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "failed"
    assert provider.stats().revoked == frozenset()
    assert db_state(db)["connections"] == []


def test_delete_of_an_api_key_connection_has_nothing_to_revoke(api: Api, static_secrets) -> None:
    created = create_api_key_connection(api)

    deleted = api.call("DELETE", f"/connections/{created['id']}")

    assert deleted.json() == {"id": created["id"], "deleted": True, "revocation": "not_supported"}


# -- integrations ---------------------------------------------------------------------------------------


def test_integration_lifecycle_never_returns_the_client_secret(api: Api, provider, secrets) -> None:
    github_secret = "gh-secret-" + "s" * 30
    secrets.add(github_secret)
    body = {
        "client_id": "gh-client",
        "client_secret": github_secret,
        "scopes": ["repo", "read:user"],
        "allowed_return_urls": ["https://app.example.com/done"],
    }

    put = api.call("PUT", "/integrations/github", body=body)
    got = api.call("GET", "/integrations/github")
    listed = api.call("GET", "/integrations")

    assert put.status == 200, put.body
    assert put.json()["has_client_secret"] is True
    assert {k: put.json()[k] for k in ("provider", "client_id", "scopes", "allowed_return_urls")} == {
        "provider": "github",
        "client_id": "gh-client",
        "scopes": ["repo", "read:user"],
        "allowed_return_urls": ["https://app.example.com/done"],
    }
    assert got.json() == put.json()
    assert sorted(item["provider"] for item in listed.json()["items"]) == ["demo", "github"]
    for answer in (put, got, listed):
        assert github_secret not in answer.body
        assert provider.settings.client_secret not in answer.body

    deleted = api.call("DELETE", "/integrations/github")
    assert deleted.status == 204
    assert_error(api.call("GET", "/integrations/github"), 404, "not_found")
    assert_error(api.call("DELETE", "/integrations/github"), 404, "not_found")


def test_put_without_client_secret_keeps_the_stored_one(api: Api, provider) -> None:
    answer = api.call(
        "PUT",
        "/integrations/demo",
        body={"client_id": provider.settings.client_id, "allowed_return_urls": ["http://127.0.0.1:3000/demo/done"]},
    )

    assert answer.status == 200, answer.body
    assert answer.json()["has_client_secret"] is True
    connect_account(api)  # the code exchange authenticates with the stored secret


@pytest.mark.parametrize(("slug", "status"), [("openai", 400), ("no-such-provider", 400)])
def test_integrations_exist_only_for_oauth_providers_in_the_catalog(api: Api, slug: str, status: int) -> None:
    assert_error(api.call("PUT", f"/integrations/{slug}", body={"client_id": "x"}), status, "validation_error")


def test_integration_return_urls_are_validated(api: Api) -> None:
    answer = api.call("PUT", "/integrations/github", body={"client_id": "x", "allowed_return_urls": ["javascript:1"]})

    assert_error(answer, 400, "validation_error", "allowed_return_urls")


def test_connect_session_needs_a_known_provider_and_for_oauth_an_integration(api: Api) -> None:
    for provider_slug in ("github", "no-such-provider"):
        answer = api.call("POST", "/connect-sessions", body={"provider": provider_slug, "end_user_id": "u"})
        assert_error(answer, 400, "validation_error", "provider")


def test_a_connect_session_for_an_api_key_provider_has_a_connect_url_and_no_authorize_url(api: Api) -> None:
    answer = api.call("POST", "/connect-sessions", body={"provider": "openai", "end_user_id": "u"})

    assert answer.status == 201, answer.body
    assert answer.json()["authorize_url"] is None
    api.secrets.add(answer.json()["connect_url"].split("token=", 1)[1])


# -- the rest -------------------------------------------------------------------------------------------


def test_providers_list_the_catalog(api: Api) -> None:
    answer = api.call("GET", "/providers")

    assert answer.status == 200
    by_slug = {item["slug"]: item for item in answer.json()["items"]}
    assert {"demo", "github", "google", "openai", "twilio"} <= set(by_slug)
    assert by_slug["openai"]["auth_type"] == "api_key"
    assert by_slug["twilio"]["auth_type"] == "basic"
    assert by_slug["demo"]["custom"] is False


def test_openapi_document_is_served(api: Api) -> None:
    answer = api.call("GET", "/openapi.json")

    assert answer.status == 200
    assert "/connections/{connection_id}/token" in answer.json()["paths"]
