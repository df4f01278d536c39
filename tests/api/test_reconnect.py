"""A reconnect for the same (provider, end user, alias) revokes the grant it replaced, as a delete does, but only
where that cannot end the new grant too (issue 13.6): a provider whose revocation ends every grant of the client
for the user (``revocation_scope: authorization``, Google) keeps the old one, and so does a token handed out again.
Played against the demo provider over real sockets."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from connvault import wiring
from connvault.db.connections import SavedGrant
from connvault.db.uow import UnitOfWork
from connvault.models import OAuth2Credentials
from connvault.redacted import Redacted
from connvault.services.revocation import ReplacedGrant, retire_replaced_grant
from demo_provider import Fault
from devserver.demo_setup import install_demo_provider
from tests.api.conftest import connect_account
from tests.api.test_confirmed_connect import park
from tests.support.factories import owner

if TYPE_CHECKING:
    from demo_provider import DemoProvider
    from tests.api.conftest import Api
    from tests.support.database import TestDatabase


def live_grant(api: Api, connection_id: str) -> str:
    """The connection's access token, after a forced refresh proved its refresh token still works."""
    answer = api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert answer.status == 200, answer.body
    return answer.json()["access_token"]


def replaced_grant_outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.replaced_grant for r in caplog.records if r.getMessage() == "reconnect replaced a grant"]


def test_a_reconnect_revokes_the_replaced_grant_and_the_new_one_keeps_working(
    api: Api, provider: DemoProvider, caplog: pytest.LogCaptureFixture
) -> None:
    first = connect_account(api, alias="work")
    [old_refresh_token] = provider.stats().live_refresh_tokens
    caplog.set_level(logging.INFO)

    second = connect_account(api, alias="work")

    assert second == first
    stats = provider.stats()
    assert stats.revoked == {old_refresh_token}
    assert len(stats.live_refresh_tokens) == 1
    assert provider.access_token_is_active(live_grant(api, second))
    assert replaced_grant_outcomes(caplog) == ["revoked"]


def test_a_provider_whose_revocation_ends_the_whole_authorization_keeps_the_replaced_grant(
    api: Api, provider: DemoProvider, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a provider that, like Google, ends every grant of the client for the user when one token is revoked
    provider.configure(revoke_whole_authorization=True)
    install_demo_provider(db.owner_target, provider, revocation_scope="authorization")
    first = connect_account(api, alias="work")
    caplog.set_level(logging.INFO)

    second = connect_account(api, alias="work")

    assert second == first
    assert provider.stats().revoked == frozenset()
    assert provider.access_token_is_active(live_grant(api, second))
    assert replaced_grant_outcomes(caplog) == ["authorization_scope"]


def test_without_the_catalog_field_such_a_provider_would_end_the_new_grant_too(
    api: Api, provider: DemoProvider
) -> None:
    """Why ``revocation_scope`` exists: the same reconnect against a catalog row that says ``token``."""
    provider.configure(revoke_whole_authorization=True)
    first = connect_account(api, alias="work")

    second = connect_account(api, alias="work")

    assert second == first
    assert provider.stats().live_refresh_tokens == frozenset()
    answer = api.call("GET", f"/connections/{second}/token", query={"force_refresh": "true"})
    assert answer.status == 409
    assert answer.json()["error"]["code"] == "needs_reauth"


def test_a_failed_revocation_does_not_fail_the_reconnect_and_is_recorded(
    api: Api, provider: DemoProvider, caplog: pytest.LogCaptureFixture
) -> None:
    first = connect_account(api, alias="work")
    provider.inject(Fault.server_error(), path="/revoke")
    caplog.set_level(logging.INFO)

    second = connect_account(api, alias="work")

    assert second == first
    assert provider.stats().revoked == frozenset()
    assert provider.access_token_is_active(live_grant(api, second))
    assert replaced_grant_outcomes(caplog) == ["failed"]
    assert any(r.getMessage() == "revocation failed" for r in caplog.records)


def test_a_reconnect_repairs_a_connection_whose_envelope_cannot_be_opened(
    api: Api, provider: DemoProvider, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    first = connect_account(api, alias="work")
    with owner(db) as sql:
        sql.run("UPDATE connections SET credentials = CAST('broken' AS bytea)")
    caplog.set_level(logging.INFO)

    second = connect_account(api, alias="work")

    assert second == first
    assert provider.access_token_is_active(live_grant(api, second))
    assert provider.stats().revoked == frozenset()
    assert replaced_grant_outcomes(caplog) == ["unreadable"]


def test_a_confirmed_reconnect_revokes_the_replaced_grant(api: Api, provider: DemoProvider) -> None:
    first = connect_account(api)
    [old_refresh_token] = provider.stats().live_refresh_tokens
    session_id, code = park(api)

    confirmed = api.call("POST", f"/connect-sessions/{session_id}/confirm", body={"confirmation": code})

    assert confirmed.status == 201, confirmed.body
    assert confirmed.json()["id"] == first
    assert provider.stats().revoked == {old_refresh_token}
    assert provider.access_token_is_active(live_grant(api, first))


def test_a_token_the_provider_handed_out_again_is_not_revoked(api: Api, provider: DemoProvider) -> None:
    """A provider that does not rotate may answer a second consent with the same refresh token: revoking the
    "old" one would end the new grant."""
    connection_id = connect_account(api)
    [refresh_token] = provider.stats().live_refresh_tokens
    same = OAuth2Credentials(Redacted("at_other"), Redacted(refresh_token))
    with UnitOfWork(api.tenant.tenant_id) as uow:
        connection = uow.connections.get(UUID(connection_id))
        demo = uow.providers.get(connection.provider_id)
        integration = uow.integrations.find(demo.id)
    saved = SavedGrant(connection, replaced=same)

    outcome = retire_replaced_grant(wiring.get_oauth_client(), demo, integration, saved)

    assert outcome is ReplacedGrant.SAME_GRANT
    assert provider.stats().revoked == frozenset()
