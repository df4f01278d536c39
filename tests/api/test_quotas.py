"""Per-tenant quotas (issue 23.9): past ``CONNVAULT_QUOTA_*`` an addition is 409 ``quota_exceeded`` and writes
nothing; what a tenant already holds keeps working (a reconnect replaces, it does not add)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from connvault.db.uow import UnitOfWork
from connvault.errors import QuotaExceeded
from connvault.services.tenants import create_api_key
from tests.api.conftest import DEMO_RETURN_URL, Api, connect_account, db_state, follow_authorize, start_connect

if TYPE_CHECKING:
    from collections.abc import Callable

    from demo_provider import DemoProvider
    from tests.support.database import TestDatabase

OPENAI_KEY = "sk-quota-" + "q" * 30


def refused(answer) -> None:
    assert answer.status == 409, answer.body
    assert answer.json()["error"]["code"] == "quota_exceeded"


def test_static_connections_past_the_quota_are_refused_and_write_nothing(
    api: Api, db: TestDatabase, reconfigure: Callable[..., None]
) -> None:
    api.secrets.add(OPENAI_KEY)
    reconfigure(quota_connections=1)
    body = {"provider": "openai", "end_user_id": "u1", "api_key": OPENAI_KEY}
    assert api.call("POST", "/connections", body=body).status == 201
    before = db_state(db)

    refused(api.call("POST", "/connections", body={**body, "end_user_id": "u2"}))
    assert db_state(db) == before


def test_a_connect_past_the_quota_revokes_the_new_grant_and_says_so_but_a_reconnect_goes_through(
    api: Api, provider: DemoProvider, reconfigure: Callable[..., None]
) -> None:
    connect_account(api, end_user_id="alice")
    reconfigure(quota_connections=1)

    started = start_connect(api, end_user_id="bob")
    landed = api.callback(follow_authorize(started.json()["authorize_url"], api.secrets))

    assert landed.status == 302
    assert "error=quota_exceeded" in landed.headers["Location"]
    assert len(provider.stats().live_refresh_tokens) == 1  # alice's; bob's new grant was revoked
    connect_account(api, end_user_id="alice")  # a reconnect replaces: no room needed


def test_integrations_custom_providers_sessions_and_api_keys_have_quotas(
    api: Api, reconfigure: Callable[..., None]
) -> None:
    reconfigure(quota_integrations=1, quota_custom_providers=0, quota_connect_sessions=1, quota_api_keys=1)

    refused(api.call("PUT", "/integrations/github", body={"client_id": "x"}))
    custom = {"authorization_url": "https://idp.example/a", "token_url": "https://idp.example/t"}
    refused(api.call("PUT", "/integrations/mine", body={"client_id": "x", "custom_provider": custom}))
    replaced = {"client_id": "demo-client", "allowed_return_urls": [DEMO_RETURN_URL]}
    assert api.call("PUT", "/integrations/demo", body=replaced).status == 200  # not new: no room needed
    assert start_connect(api).status == 201
    refused(start_connect(api))
    with pytest.raises(QuotaExceeded):
        create_api_key(UnitOfWork(api.tenant.tenant_id))
