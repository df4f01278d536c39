"""Confirmed connect sessions: the account that came back is attached to the tenant's user only once the tenant's
backend confirms it with the one-time code the return URL received; an unconfirmed grant is revoked at the
provider when its session expires. (The attack and the defence: docs/security.md, item 15.)"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from connvault.clock import utcnow
from connvault.db.uow import UnitOfWork
from connvault.services.connect_confirmation import revoke_unconfirmed
from connvault.services.tenants import create_api_key, create_tenant
from demo_provider import DemoProvider
from tests.api.conftest import Api, follow_authorize, start_connect
from tests.support.database import TestDatabase
from tests.support.factories import owner


def park(api: Api) -> tuple[str, str]:
    """Start a session that requires confirmation and play the browser; the session id and the code."""
    started = start_connect(api, require_confirmation=True)
    assert started.status == 201, started.body
    session_id = started.json()["id"]
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))
    assert landed.status == 302, landed.body
    query = parse_qs(urlsplit(landed.headers["Location"]).query)
    assert query["connect_session_id"] == [session_id]
    assert "connection_id" not in query
    code = query["confirmation"][0]
    api.secrets.add(code)
    return session_id, code


def connections(db: TestDatabase) -> int:
    with owner(db) as sql:
        return sql.run("SELECT count(*) FROM connections")[0][0]


def test_the_connection_exists_only_once_the_tenant_confirms(api: Api, db: TestDatabase) -> None:
    session_id, code = park(api)
    assert connections(db) == 0

    confirmed = api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code})

    assert confirmed.status == 201, confirmed.body
    connection = confirmed.json()
    assert connection["status"] == "active"
    assert connection["end_user_id"] == "user-1"
    assert api.call("GET", f"/connections/{connection['id']}/token").status == 200


def test_a_wrong_code_is_refused_and_the_right_one_then_works_once(api: Api, db: TestDatabase) -> None:
    session_id, code = park(api)
    path = f"/connect-sessions/{session_id}/confirm"

    wrong = ("y" if code[0] == "x" else "x") + code[1:]  # "x" + code[1:] was the right code when it began with x
    assert api.call("POST", path, body={"confirmation": wrong}).status == 404
    assert api.call("POST", path, body={"confirmation": code}).status == 201
    assert api.call("POST", path, body={"confirmation": code}).status == 404
    assert connections(db) == 1


def test_another_tenant_cannot_confirm(api: Api, db: TestDatabase) -> None:
    session_id, code = park(api)
    other = create_tenant("Other")
    key = create_api_key(UnitOfWork(other.id)).plaintext.reveal()
    api.secrets.add(key)

    refused = api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code}, key=key)

    assert refused.status == 404
    assert connections(db) == 0


def test_an_unconfirmed_grant_is_revoked_at_the_provider_when_the_session_expires(
    api: Api, db: TestDatabase, provider: DemoProvider
) -> None:
    session_id, code = park(api)
    live_before = provider.stats().live_refresh_tokens
    assert live_before

    swept = revoke_unconfirmed(now=lambda: utcnow() + timedelta(minutes=11))

    assert (swept.revoked, swept.dropped) == (1, 0)
    assert not (provider.stats().live_refresh_tokens & live_before)
    assert api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code}).status == 404
    with owner(db) as sql:
        assert sql.run("SELECT count(*) FROM connect_confirmations")[0][0] == 0
    assert connections(db) == 0


def test_a_grant_is_not_swept_before_its_session_expires(api: Api) -> None:
    session_id, code = park(api)

    assert revoke_unconfirmed() == type(revoke_unconfirmed())(0, 0)
    assert api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code}).status == 201


def test_confirmation_needs_a_return_url(api: Api) -> None:
    refused = start_connect(api, require_confirmation=True, return_url=None)

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "return_url"


def test_without_the_option_the_flow_is_unchanged(api: Api) -> None:
    started = start_connect(api)
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    query = parse_qs(urlsplit(landed.headers["Location"]).query)
    assert "connection_id" in query
    assert "confirmation" not in query
    assert started.json()["require_confirmation"] is False


def test_the_confirmed_connection_keeps_the_account_id_the_provider_named(
    api: Api, db: TestDatabase, provider: DemoProvider
) -> None:
    # Given a provider whose token responses name the account, as its catalog entry says
    with owner(db) as sql:
        sql.run("UPDATE providers SET account_id_fields = '{user.id}' WHERE slug = 'demo'")
    account_id = "demo-account-7"
    provider.configure(extra_fields={"user": {"id": account_id}})

    # When the grant is parked for confirmation and then confirmed
    session_id, code = park(api)
    with owner(db) as sql:
        (parked,) = sql.run("SELECT provider_account_id FROM connect_confirmations")[0]
    confirmed = api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code})

    # Then the id waited sealed, and the connection carries it and is found by it
    assert parked is not None and account_id.encode() not in bytes(parked)
    assert confirmed.status == 201, confirmed.body
    assert confirmed.json()["provider_account_id"] == account_id
    found = api.call("GET", "/connections", query={"provider_account_id": account_id}).json()["items"]
    assert [item["id"] for item in found] == [confirmed.json()["id"]]
