"""Device connect sessions (RFC 8628) through the real handlers against the demo provider, which keeps each
device code's state as a real server does and counts every poll that came sooner than its interval."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from connvault import wiring
from connvault.clock import utcnow
from connvault.db.uow import UnitOfWork
from connvault.services.device import advance_device_sessions, poll
from demo_provider import DEVICE_CODE, DemoProvider, DemoSettings, Fault
from devserver.handlers import InvocationContext, load_handler
from tests.api.conftest import Answer, Api
from tests.support.factories import owner

INTERVAL = 1


@pytest.fixture
def device(api: Api, provider: DemoProvider, reconfigure) -> DemoProvider:
    reconfigure(device_min_interval_seconds=INTERVAL)  # the deployed floor is 5 s; these tests wait intervals out
    provider.configure(device_interval_seconds=INTERVAL)
    return provider


def start(api: Api, key: str | None = None, **fields: Any) -> Answer:
    body = {"provider": "demo", "end_user_id": "tv-42", "flow": "device", **fields}
    answer = api.call("POST", "/connect-sessions", body=body, key=key)
    if answer.status == 201:
        started = answer.json()
        api.secrets.add(started["user_code"], started["verification_uri_complete"])
    return answer


def status_of(api: Api, session_id: str) -> Answer:
    return api.call("GET", f"/connect-sessions/{session_id}")


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def device_codes(provider: DemoProvider, api: Api) -> None:
    """Register the device codes the provider issued: they must never show anywhere."""
    api.secrets.add(*(code for code in provider._device_grants))


def device_polls(provider: DemoProvider) -> int:
    return provider.stats().token_calls.get(DEVICE_CODE, 0)


def poll_until(api: Api, session_id: str, wanted: str, timeout: float = 15.0) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ended() -> bool:
        found.update(status_of(api, session_id).json())
        return found["status"] == wanted

    wait_for(ended, timeout)
    return found


class Countdown:
    """A Lambda context whose remaining time runs down for real."""

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    def __call__(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# -- the flow ----------------------------------------------------------------------------------------------------


def test_a_device_session_answers_codes_to_show_and_then_pending(api: Api, device) -> None:
    started = start(api, scopes=["read"])

    assert started.status == 201, started.body
    assert started.headers["Cache-Control"] == "no-store"
    body = started.json()
    assert body["flow"] == "device"
    assert body["status"] == "pending"
    assert body["verification_uri"] == f"{device.base_url}/device"
    assert body["verification_uri_complete"] == f"{device.base_url}/device?user_code={body['user_code']}"
    assert body["interval"] == INTERVAL
    assert 590 <= body["expires_in"] <= 600
    assert body["connection_id"] is None and body["error"] is None
    device_codes(device, api)
    time.sleep(INTERVAL)
    assert status_of(api, body["id"]).json()["status"] == "pending"
    assert device_polls(device) == 1


def test_an_approved_session_completes_with_a_device_code_connection(api: Api, device) -> None:
    body = start(api).json()
    device_codes(device, api)
    assert device.approve_device(body["user_code"])

    done = poll_until(api, body["id"], "completed")

    assert done["user_code"] is None and done["verification_uri_complete"] is None
    connection = api.call("GET", f"/connections/{done['connection_id']}").json()
    assert (connection["kind"], connection["end_user_id"], connection["status"]) == ("device_code", "tv-42", "active")
    token = api.call("GET", f"/connections/{done['connection_id']}/token").json()["access_token"]
    assert device.access_token_is_active(token)
    forced = api.call("GET", f"/connections/{done['connection_id']}/token", query={"force_refresh": "true"})
    assert forced.status == 200 and forced.json()["access_token"] != token
    assert device.stats().device_polls_too_early == 0


def test_denied_and_expired_end_the_session(api: Api, device, db) -> None:
    denied = start(api, end_user_id="a").json()
    device.configure(device_code_ttl_seconds=1)
    expired = start(api, end_user_id="b").json()
    device_codes(device, api)
    device.deny_device(denied["user_code"])
    time.sleep(1.2)

    assert poll_until(api, denied["id"], "denied")["error"] == "access_denied"
    assert poll_until(api, expired["id"], "expired")["error"] == "expired_token"
    with owner(db) as connection:
        assert connection.run("SELECT count(*) FROM device_sessions WHERE codes IS NOT NULL") == [[0]]
    assert api.call("GET", "/connections").json()["items"] == []


def test_slow_down_adds_five_seconds_to_the_interval_for_good(api: Api, device, db) -> None:
    body = start(api).json()
    device_codes(device, api)
    time.sleep(INTERVAL)
    device.inject(Fault.error(400, "slow_down"))

    after = status_of(api, body["id"]).json()

    assert (after["status"], after["interval"]) == ("pending", INTERVAL + 5)
    with owner(db) as connection:
        (wait,) = connection.run(
            "SELECT extract(epoch FROM next_poll_at - now()) FROM device_sessions WHERE id = CAST(:i AS uuid)",
            i=body["id"],
        )[0]
    assert INTERVAL + 4 < wait <= INTERVAL + 5
    calls = device_polls(device)
    assert status_of(api, body["id"]).json()["status"] == "pending"
    assert device_polls(device) == calls  # not due yet: asking changed nothing


def test_a_provider_failing_while_polling_keeps_the_session_and_backs_off(api: Api, device, db) -> None:
    body = start(api).json()
    device_codes(device, api)
    time.sleep(INTERVAL)
    device.inject(Fault.server_error())

    assert status_of(api, body["id"]).json()["status"] == "pending"

    with owner(db) as connection:
        (failures, wait) = connection.run(
            "SELECT poll_failures, extract(epoch FROM next_poll_at - now()) FROM device_sessions"
            " WHERE id = CAST(:i AS uuid)",
            i=body["id"],
        )[0]
    assert failures == 1
    assert 1 < wait <= 2 * INTERVAL


def test_many_callers_never_poll_faster_than_the_interval(api: Api, device, reconfigure) -> None:
    # Eight callers as fast as they can: on a quiet machine that is past the tenant's request rate, which this
    # test is not about (tests/api/test_rate_limits.py is)
    reconfigure(db_max_overflow=20, rate_limit_per_second=0)
    body = start(api).json()
    device_codes(device, api)
    stop = time.monotonic() + 3.5

    def hammer(_: int) -> int:
        asked = 0
        while time.monotonic() < stop:
            assert status_of(api, body["id"]).status == 200
            asked += 1
        return asked

    with ThreadPoolExecutor(max_workers=8) as pool:
        asked = sum(pool.map(hammer, range(8)))

    polls = device.stats().device_polls[body["user_code"]]
    assert asked > 5 * len(polls)
    assert 2 <= len(polls) <= 4
    assert all(later - earlier >= INTERVAL - 0.05 for earlier, later in itertools.pairwise(polls))
    assert device.stats().device_polls_too_early == 0


def test_a_poll_whose_lease_ran_out_never_reaches_the_provider(api: Api, device) -> None:
    # A poller thread claimed the session but was held up past its lease (the outside probe of 2026-11-30: a
    # batch of 24 leased for 20 s, worked through two at a time); meanwhile the tenant's GET took the session
    # and polled. The held-up poll must not ask the provider again within the interval.
    body = start(api).json()
    device_codes(device, api)
    session_id = uuid.UUID(body["id"])
    time.sleep(INTERVAL)
    with UnitOfWork(api.tenant.tenant_id) as uow:
        moment = utcnow()
        stale = uow.device_sessions.claim_poll(session_id, moment, moment + timedelta(seconds=0.2))
        uow.commit()
    assert stale is not None
    time.sleep(INTERVAL + 0.1)
    assert status_of(api, body["id"]).json()["status"] == "pending"
    assert device_polls(device) == 1  # the GET's poll, once the claim's interval had passed

    assert poll(stale, oauth=wiring.get_oauth_client(), sealer=None, now=utcnow) is None

    assert device_polls(device) == 1
    assert device.stats().device_polls_too_early == 0
    assert status_of(api, body["id"]).json()["status"] == "pending"  # the GET's lease was not disturbed


def test_a_provider_may_not_ask_for_polls_faster_than_the_floor_nor_for_a_day_long_session(
    api: Api, device, reconfigure
) -> None:
    reconfigure(device_min_interval_seconds=5)
    device.configure(device_code_ttl_seconds=86_400)

    body = start(api).json()

    device_codes(device, api)
    assert body["interval"] == 5
    assert 1790 <= body["expires_in"] <= 1800


def test_one_tenants_many_slow_sessions_do_not_hold_up_another_tenants(api: Api, device, reconfigure) -> None:
    # The outside probe of 2026-11-30: tenant C's sessions at a custom provider that answers each poll after
    # seconds held both poller threads, batch after batch; B's approved session waited behind all of them.
    from devserver.demo_setup import create_demo_tenant

    slow_seconds, sessions = 2.0, 20
    reconfigure(http_timeout_seconds=slow_seconds + 2)
    with DemoProvider(DemoSettings(latency_seconds=slow_seconds, device_interval_seconds=INTERVAL)) as slow:
        other = create_demo_tenant(device, name="C")
        api.secrets.add(other.api_key.reveal(), slow.settings.client_secret)
        c_key = other.api_key.reveal()
        defined = api.call(
            "PUT",
            "/integrations/slow-idp",
            key=c_key,
            body={
                "client_id": slow.settings.client_id,
                "client_secret": slow.settings.client_secret,
                "custom_provider": {"discovery_url": f"{slow.base_url}/.well-known/openid-configuration"},
            },
        )
        assert defined.status == 200, defined.body
        for number in range(sessions):
            assert start(api, provider="slow-idp", end_user_id=f"c-{number}", key=c_key).status == 201
        device_codes(slow, api)
        done = threading.Event()
        countdown = Countdown(sessions * slow_seconds + 10)
        with ThreadPoolExecutor(max_workers=1) as runner:
            run = runner.submit(
                advance_device_sessions, remaining_ms=lambda: 0 if done.is_set() else countdown(), margin_ms=0
            )
            wait_for(lambda: slow.stats().token_calls.get(DEVICE_CODE, 0) > 0)  # the poller is busy with C
            began = time.monotonic()
            body = start(api, end_user_id="b-1").json()
            device_codes(device, api)
            device.approve_device(body["user_code"])
            # B only reads its connections, which never polls: the poller alone must complete the session.
            bound = INTERVAL + 2 * slow_seconds + 2
            try:
                wait_for(lambda: bool(api.call("GET", "/connections").json()["items"]), timeout=bound + 5)
                waited = time.monotonic() - began
            finally:
                done.set()
            run.result()
        assert waited < bound, f"B's session completed after {waited:.1f} s"
        assert status_of(api, body["id"]).json()["status"] == "completed"


def test_the_pollers_claim_takes_no_more_than_asked_and_the_tenant_with_fewest_polls_in_flight_first(
    api: Api, device
) -> None:
    from devserver.demo_setup import create_demo_tenant

    other = create_demo_tenant(device, name="B")
    api.secrets.add(other.api_key.reveal())
    mine = [start(api, end_user_id=f"a-{number}").json()["id"] for number in range(3)]
    theirs = start(api, end_user_id="b-1", key=other.api_key.reveal()).json()["id"]
    device_codes(device, api)
    time.sleep(INTERVAL)
    with UnitOfWork(api.tenant.tenant_id) as uow:  # one of this tenant's sessions is being polled (its GET)
        moment = utcnow()
        assert uow.device_sessions.claim_poll(uuid.UUID(mine[0]), moment, moment + timedelta(seconds=30))
        uow.commit()

    with UnitOfWork(None) as uow:
        moment = utcnow()
        first = uow.device_sessions.claim_due(moment, 1, moment + timedelta(seconds=30))
        then = uow.device_sessions.claim_due(moment, 5, moment + timedelta(seconds=30))
        uow.commit()

    assert [str(due.session_id) for due in first] == [theirs]  # due last, but its tenant has nothing in flight
    assert sorted(str(due.session_id) for due in then) == sorted(mine[1:])


def test_the_scheduled_poller_completes_a_session_nobody_asks_about(api: Api, device, reconfigure) -> None:
    reconfigure(http_timeout_seconds=1)
    body = start(api).json()
    device_codes(device, api)
    device.approve_device(body["user_code"])

    report = advance_device_sessions(remaining_ms=Countdown(8.0), margin_ms=1000)

    assert report.completed == 1
    assert status_of(api, body["id"]).json()["status"] == "completed"
    assert device.stats().device_polls_too_early == 0


def test_the_poller_function_polls_at_the_interval_and_stops_when_nothing_is_pending(
    api: Api, device, reconfigure
) -> None:
    reconfigure(http_timeout_seconds=1)
    body = start(api).json()
    device_codes(device, api)
    threading.Timer(2.5, device.approve_device, args=(body["user_code"],)).start()
    context = InvocationContext(function_name="device_poller", aws_request_id="poll-1", remaining_ms=12_000)
    began = time.monotonic()

    report = load_handler("device_poller")({"source": "aws.events"}, context)

    assert report["completed"] == 1
    assert time.monotonic() - began < 6  # it stopped once nothing was pending, long before its deadline
    polls = device.stats().device_polls[body["user_code"]]
    assert len(polls) >= 3
    assert device.stats().device_polls_too_early == 0


def test_an_idle_poller_run_returns_at_once(api: Api, device) -> None:
    began = time.monotonic()

    report = advance_device_sessions(remaining_ms=Countdown(30.0), margin_ms=1000)

    assert report.polled == 0
    assert time.monotonic() - began < 2


def test_a_session_past_its_expiry_reads_expired_without_waiting_for_its_next_poll(api: Api, device, db) -> None:
    body = start(api).json()
    device_codes(device, api)
    with owner(db) as connection:
        connection.run(
            "UPDATE device_sessions"
            " SET expires_at = now() - interval '1 second', next_poll_at = now() + interval '1 hour'"
        )

    ended = status_of(api, body["id"]).json()

    assert (ended["status"], ended["error"], ended["user_code"]) == ("expired", "expired_token", None)
    assert device_polls(device) == 0


def test_the_catalog_says_which_providers_offer_a_device_flow(api: Api, device) -> None:
    providers = {p["slug"]: p["device_flow"] for p in api.call("GET", "/providers").json()["items"]}

    assert providers["demo"] is True
    assert providers["github"] is True
    assert providers["openai"] is False


def test_a_device_session_of_an_existing_account_reconnects_it(api: Api, device) -> None:
    first = start(api).json()
    device_codes(device, api)
    device.approve_device(first["user_code"])
    connection_id = poll_until(api, first["id"], "completed")["connection_id"]

    second = start(api).json()
    device_codes(device, api)
    device.approve_device(second["user_code"])

    assert poll_until(api, second["id"], "completed")["connection_id"] == connection_id
    assert len(api.call("GET", "/connections").json()["items"]) == 1


# -- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"return_url": "http://127.0.0.1:3000/demo/done"}, "return_url"),
        ({"require_confirmation": True}, "require_confirmation"),
        ({"provider": "openai"}, "provider"),
        ({"provider": "slack"}, "provider"),
        ({"flow": "telepathy"}, "body.flow"),
    ],
)
def test_what_a_device_session_cannot_be_is_400_naming_the_field(api: Api, device, fields, field) -> None:
    refused = start(api, **fields)

    assert refused.status == 400, refused.body
    assert refused.json()["error"]["field"] == field
    assert device.stats().token_calls == {}


def test_a_client_the_device_endpoint_refuses_is_422(api: Api, device) -> None:
    device.inject(Fault.error(401, "invalid_client"), path="/device_authorization")

    refused = start(api)

    assert refused.status == 422
    assert refused.json()["error"]["code"] == "credentials_refused"


def test_a_device_endpoint_that_does_not_answer_is_503(api: Api, device) -> None:
    device.inject(Fault.server_error(), path="/device_authorization")

    assert start(api).status == 503


def test_another_tenants_session_is_404(api: Api, device) -> None:
    from devserver.demo_setup import create_demo_tenant

    body = start(api).json()
    other = create_demo_tenant(device, name="Other")
    api.secrets.add(other.api_key.reveal())

    assert api.call("GET", f"/connect-sessions/{body['id']}", key=other.api_key.reveal()).status == 404
    assert status_of(api, "00000000-0000-0000-0000-000000000000").status == 404


def test_custom_providers_from_discovery_pick_up_the_device_endpoint(api: Api, device) -> None:
    defined = api.call(
        "PUT",
        "/integrations/acme-idp",
        body={
            "client_id": device.settings.client_id,
            "client_secret": device.settings.client_secret,
            "custom_provider": {"discovery_url": f"{device.base_url}/.well-known/openid-configuration"},
        },
    )
    assert defined.status == 200, defined.body
    assert defined.json()["custom_provider"]["device_authorization_url"] == f"{device.base_url}/device_authorization"

    body = start(api, provider="acme-idp").json()
    device_codes(device, api)
    device.approve_device(body["user_code"])

    assert poll_until(api, body["id"], "completed")["connection_id"]


def test_device_sessions_count_against_the_quota_of_live_connect_sessions(api: Api, device, reconfigure) -> None:
    reconfigure(quota_connect_sessions=1)
    assert start(api).status == 201
    device_codes(device, api)
    issued = len(device._device_grants)

    refused = start(api, end_user_id="another")

    assert refused.status == 409 and refused.json()["error"]["code"] == "quota_exceeded"
    assert len(device._device_grants) == issued  # refused before the provider was asked


def test_a_session_completing_past_the_quota_of_connections_fails_and_its_grant_is_revoked(
    api: Api, device, reconfigure
) -> None:
    body = start(api).json()
    device_codes(device, api)
    reconfigure(quota_connections=0)
    device.approve_device(body["user_code"])

    ended = poll_until(api, body["id"], "failed")

    assert (ended["error"], ended["connection_id"]) == ("quota_exceeded", None)
    assert api.call("GET", "/connections").json()["items"] == []
    assert device.stats().live_refresh_tokens == set()
    api.secrets.add(*device.stats().access_tokens)
