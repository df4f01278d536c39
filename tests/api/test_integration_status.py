"""A client secret the provider refuses is the integration's fault, not every end user's (issue 13, item 10).

``invalid_client`` or ``unauthorized_client`` from the token endpoint used to send each connection to
``needs_reauth``, and fixing the secret cleared none of them. Now the integration is marked
``invalid_credentials`` (with the code and the time, shown by ``GET /integrations/{provider}``), its connections
keep their grants and states, nobody calls the provider for it any more, and refreshes resume as soon as the
tenant sends new credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.services.runner import RunReport
from connvault.services.scheduler import refresh_due
from demo_provider import DemoProvider, Fault
from devserver.demo_setup import DEMO_RETURN_URL
from tests.api.conftest import Api, connect_account
from tests.hardening.support import POLICY, RUN, TIMEOUT, fetch, make_due, row, stored_refresh_token
from tests.support.database import TestDatabase

ROTATED_SECRET = "demo-secret-rotated-by-the-provider"


def run_scheduler() -> RunReport:
    """A run calling the provider one at a time, so that "asked once" is exact (with a cap of N, the refusal can
    meet at most the N calls already in flight)."""
    transport = HttpTransport(TIMEOUT)
    try:
        return refresh_due(
            remaining_ms=lambda: 600_000,
            config=replace(RUN, per_provider_concurrency=1),
            policy=POLICY,
            oauth=OAuthClient(transport),
        )
    finally:
        transport.close()


def refresh_calls(provider: DemoProvider) -> int:
    return provider.stats().token_calls.get("refresh_token", 0)


def the_app_is_refused(provider: DemoProvider, api: Api) -> str:
    """The tenant's app at the provider stops working: its secret was rotated there (the stored one is refused
    with 401 invalid_client)."""
    api.secrets.add(ROTATED_SECRET)
    provider.configure(client_secret=ROTATED_SECRET)
    return ROTATED_SECRET


def the_app_is_unauthorized(provider: DemoProvider, api: Api) -> str:
    """The provider no longer lets the app use this grant type (400 unauthorized_client, once)."""
    provider.inject(Fault.error(400, "unauthorized_client"))
    secret = provider.settings.client_secret
    assert secret is not None
    return secret


@pytest.mark.parametrize(
    ("refuse", "code"), [(the_app_is_refused, "invalid_client"), (the_app_is_unauthorized, "unauthorized_client")]
)
def test_a_refused_app_marks_the_integration_keeps_the_connections_and_refreshes_resume_once_it_is_fixed(
    api: Api,
    provider: DemoProvider,
    db: TestDatabase,
    refuse: Callable[[DemoProvider, Api], str],
    code: str,
) -> None:
    # Given three due connections and a provider that now refuses the tenant's app
    ids = [connect_account(api, end_user_id=f"user-{i}") for i in range(3)]
    for connection_id in ids:
        make_due(db, connection_id)
    before = {connection_id: row(db, connection_id) for connection_id in ids}
    refresh_tokens = {connection_id: stored_refresh_token(db, connection_id) for connection_id in ids}
    secret = refuse(provider, api)

    # When a scheduled run meets the refusal
    report = run_scheduler()

    # Then the provider was asked once, the integration carries the failure, and the connections are untouched
    assert refresh_calls(provider) == 1
    assert report.integration_refused == 3
    assert report.permanent_failures == 0
    for connection_id in ids:
        after = row(db, connection_id)
        assert (after.status, after.last_error_code, after.refresh_failures) == ("active", None, 0)
        assert after.credentials == before[connection_id].credentials
        assert not after.leased
        assert stored_refresh_token(db, connection_id) == refresh_tokens[connection_id]
    shown = api.call("GET", "/integrations/demo")
    assert shown.status == 200, shown.body
    assert (shown.json()["status"], shown.json()["status_reason"]) == ("invalid_credentials", code)
    assert shown.json()["status_since"] is not None

    # And nothing hammers the provider meanwhile: no run claims them, a valid token is still served, and a forced
    # refresh says why it cannot be done
    assert run_scheduler().claimed == 0
    served = fetch(api, ids[0], force=False)
    assert served.status == 200, served.body
    forced = fetch(api, ids[0], force=True)
    assert forced.status == 409, forced.body
    assert forced.json()["error"]["code"] == "integration_invalid_credentials"
    assert refresh_calls(provider) == 1

    # When the tenant sends working credentials
    put = api.call(
        "PUT",
        "/integrations/demo",
        body={
            "client_id": provider.settings.client_id,
            "client_secret": secret,
            "scopes": ["read"],
            "allowed_return_urls": [DEMO_RETURN_URL],
        },
    )
    assert put.status == 200, put.body
    assert (put.json()["status"], put.json()["status_reason"]) == ("active", None)

    # Then refreshes resume at once
    assert run_scheduler().refreshed == 3
    assert all(row(db, connection_id).status == "active" for connection_id in ids)
    assert provider.stats().refresh_token_reuse == 0
