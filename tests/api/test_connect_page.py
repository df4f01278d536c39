"""The hosted connect page (issue 21) through the real handlers: connect sessions with a connect_url, the page's
function (``functions/connect_page``), the demo providers (OAuth and API key) and the OAuth callback.

Every link token, page token and API key is registered with the secret scanner; ``Api`` checks every error body
and Location header for them, and the tests check that no page writes a typed secret back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from connvault.api.pages import STYLE_HASH
from connvault.models import ApiKeyCredentials
from demo_provider import DemoProvider
from devserver.demo_setup import DEMO_TENANT_DISPLAY_NAME, install_demo_api_key_provider
from devserver.events import http_event
from tests.api.conftest import (
    DEMO_RETURN_URL,
    Answer,
    Api,
    db_state,
    follow_authorize,
    start_connect,
    stored_connection,
)
from tests.support.database import TestDatabase
from tests.support.factories import owner

GOOD_KEY = "dk_demo_0123456789abcdef"
REFUSED_KEY = "dk_not_a_key_it_issued_0000"


@dataclass
class Browser:
    """Plays a browser on the page: keeps the page's cookie, reads the page token out of its forms."""

    api: Api
    cookie: str | None = None

    def open(self, url: str) -> Answer:
        parts = urlsplit(url)
        return self._send(http_event("GET", parts.path, query=parts.query, headers=self._headers()))

    def post(self, fields: dict[str, str], *, content_type: str = "application/x-www-form-urlencoded") -> Answer:
        headers = {**self._headers(), "content-type": content_type}
        return self._send(http_event("POST", "/connect", body=urlencode(fields), headers=headers))

    def _headers(self) -> dict[str, str]:
        return {"cookie": self.cookie} if self.cookie else {}

    def _send(self, event: dict[str, Any]) -> Answer:
        raw = self.api.invoke_raw("connect_page", event)
        for cookie in raw.get("cookies") or ():
            value = cookie.split(";")[0]
            self.cookie = value if value.split("=", 1)[1] else None
        answer = Answer(raw["statusCode"], raw.get("headers") or {}, raw.get("body") or "")
        # The page token belongs in the page's forms (and the cookie); any other secret anywhere in it is a leak.
        shown = re.sub(r'name="page_token" value="[^"]*"', "", answer.body) + answer.headers.get("Location", "")
        self.api.secrets.check(shown, "a connect page answer")
        return answer


@pytest.fixture
def demo_api(db: TestDatabase, provider: DemoProvider, api: Api) -> Api:
    install_demo_api_key_provider(db.owner_target, provider)
    api.secrets.add(GOOD_KEY, REFUSED_KEY)
    return api


def start(api: Api, **fields: Any) -> Answer:
    body = {"providers": ["demo", "demo-apikey"], "end_user_id": "user-1", "return_url": DEMO_RETURN_URL, **fields}
    answer = api.call("POST", "/connect-sessions", body={k: v for k, v in body.items() if v is not None})
    if answer.status == 201:
        api.secrets.add(*parse_qs(urlsplit(answer.json()["connect_url"]).query)["token"])
    return answer


def connect_url(api: Api, **fields: Any) -> str:
    answer = start(api, **fields)
    assert answer.status == 201, answer.body
    return answer.json()["connect_url"]


def page_token(page: Answer, api: Api) -> str:
    token = re.search(r'name="page_token" value="([^"]+)"', page.body)
    assert token, page.body
    api.secrets.add(token.group(1))
    return token.group(1)


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def connection_count(db: TestDatabase) -> int:
    with owner(db) as sql:
        return sql.run("SELECT count(*) FROM connections")[0][0]


# -- the connect session ------------------------------------------------------------------------------------


def test_a_session_for_several_providers_answers_a_connect_url_and_no_authorize_url(demo_api: Api) -> None:
    answer = start(demo_api)

    assert answer.status == 201, answer.body
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert body["authorize_url"] is None
    assert body["connect_url"].startswith("http://127.0.0.1:3000/connect?token=")
    assert len(query_of(body["connect_url"])["token"]) >= 43
    assert body["expires_at"] == body["connect_url_expires_at"]


def test_a_session_for_one_oauth_provider_answers_both_urls(demo_api: Api) -> None:
    answer = start(demo_api, providers=None, provider="demo")

    assert answer.status == 201, answer.body
    assert answer.json()["authorize_url"].startswith("http://127.0.0.1:")
    assert answer.json()["connect_url"].startswith("http://127.0.0.1:3000/connect?token=")
    demo_api.secrets.add(*parse_qs(urlsplit(answer.json()["authorize_url"]).query)["state"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"providers": ["demo", "nope"]}, "providers"),
        ({"providers": []}, "body.providers"),
        ({"provider": "demo"}, "body"),
        ({"providers": ["demo-apikey"], "scopes": ["read"]}, "scopes"),
        ({"return_url": "https://elsewhere.example/back"}, "return_url"),
    ],
)
def test_a_session_the_tenant_must_fix_is_refused_with_the_field_named(demo_api: Api, fields, field) -> None:
    answer = start(demo_api, **fields)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == field


def test_an_api_key_link_needs_its_return_url_in_the_connect_settings(demo_api: Api) -> None:
    demo_api.call("PUT", "/connect-settings", body={"allowed_return_urls": []})

    refused = start(demo_api, providers=["demo-apikey"])
    oauth_only = start(demo_api, providers=["demo"])

    assert refused.status == 400
    assert refused.json()["error"]["field"] == "return_url"
    assert oauth_only.status == 201, "the integration's allow-list still covers OAuth-only links"


def test_a_session_for_one_oauth_provider_accepts_a_return_url_of_the_connect_settings(demo_api: Api) -> None:
    # Given a return URL the tenant registered for its connect links only, not for the integration
    settings_only = "https://app.example.com/connected"
    saved = demo_api.call("PUT", "/connect-settings", body={"allowed_return_urls": [settings_only]})
    assert saved.status == 200, saved.body

    # When a session for the one OAuth provider names it, and one names a URL registered nowhere
    accepted = start(demo_api, providers=["demo"], return_url=settings_only)
    refused = start(demo_api, providers=["demo"], return_url="https://elsewhere.example/back")

    # Then the first starts (the link and the authorize URL both), the second is the tenant's to fix
    assert accepted.status == 201, accepted.body
    assert accepted.json()["authorize_url"]
    assert refused.status == 400
    assert refused.json()["error"]["field"] == "return_url"


# -- opening the link ---------------------------------------------------------------------------------------


def test_the_page_lists_the_allowed_integrations_with_names_logos_and_a_strict_policy(demo_api: Api, provider) -> None:
    browser = Browser(demo_api)

    page = browser.open(connect_url(demo_api))

    assert page.status == 200, page.body
    assert page.headers["Content-Type"].startswith("text/html")
    assert DEMO_TENANT_DISPLAY_NAME in page.body
    assert re.findall(r'name="provider" value="([^"]+)"', page.body) == ["demo", "demo-apikey"]
    assert "Demo provider" in page.body and "Demo API" in page.body
    assert page.body.count('src="data:image/svg+xml;base64,') == 2
    assert "<script" not in page.body and " style=" not in page.body
    policy = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["style-src"] == f"'{STYLE_HASH}'"
    assert policy["img-src"] == "data:"
    assert policy["form-action"] == f"'self' {provider.base_url}"
    assert policy["frame-ancestors"] == "'none'"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert browser.cookie is not None


def test_the_link_works_once_but_the_browser_that_opened_it_may_reload_it(demo_api: Api) -> None:
    url = connect_url(demo_api)
    first = Browser(demo_api)
    first.open(url)

    reload = first.open(url)
    stranger = Browser(demo_api).open(url)

    assert reload.status == 200
    assert stranger.status == 410
    assert "already used" in stranger.body
    assert query_of(re.search(r'href="([^"]+)"', stranger.body).group(1).replace("&amp;", "&")) == {
        "error": "used_link"
    }


def test_an_expired_link_explains_itself_and_leads_back_with_an_error(demo_api: Api, reconfigure) -> None:
    reconfigure(connect_link_ttl_seconds=0)
    url = connect_url(demo_api)

    page = Browser(demo_api).open(url)

    assert page.status == 410
    assert "expired" in page.body
    assert DEMO_TENANT_DISPLAY_NAME in page.body
    assert "error=expired_link" in page.body


@pytest.mark.parametrize("query", ["", "token=", "token=nope", "token=" + "x" * 600, "token=%00%ff"])
def test_an_unknown_link_gets_a_page_not_json(demo_api: Api, query: str) -> None:
    page = Browser(demo_api).open(f"http://127.0.0.1:3000/connect?{query}")

    assert page.status == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert "not valid" in page.body


# -- OAuth from the page ------------------------------------------------------------------------------------


def test_choosing_the_oauth_provider_runs_the_flow_and_ends_on_the_connected_page(demo_api: Api, db) -> None:
    browser = Browser(demo_api)
    page = browser.open(connect_url(demo_api))

    redirect = browser.post({"page_token": page_token(page, demo_api), "step": "choose", "provider": "demo"})
    assert redirect.status == 303, redirect.body
    landed = demo_api.callback(follow_authorize(redirect.headers["Location"], demo_api.secrets))

    assert landed.status == 200, landed.body
    assert "Connected" in landed.body
    back = re.search(r'href="([^"]+)"', landed.body).group(1).replace("&amp;", "&")
    assert back.startswith(DEMO_RETURN_URL + "?connection_id=")
    assert stored_connection(db, query_of(back)["connection_id"]).end_user_id == "user-1"
    assert "frame-ancestors 'none'" in landed.headers["Content-Security-Policy"]
    assert browser.post({"page_token": page_token(page, demo_api), "step": "list"}).status == 410


def test_a_refused_consent_ends_on_a_failure_page_that_offers_a_retry(demo_api: Api, provider) -> None:
    provider.configure(deny_authorization=True)
    browser = Browser(demo_api)
    page = browser.open(connect_url(demo_api))
    redirect = browser.post({"page_token": page_token(page, demo_api), "step": "choose", "provider": "demo"})

    failed = demo_api.callback(follow_authorize(redirect.headers["Location"], demo_api.secrets))
    retry = browser.post({"page_token": page_token(failed, demo_api), "step": "list"})

    assert failed.status == 400
    assert "Could not connect" in failed.body and "access_denied" in failed.body
    assert "error=access_denied" in failed.body
    assert retry.status == 200
    assert 'value="demo-apikey"' in retry.body


# -- API keys from the page ---------------------------------------------------------------------------------


def key_form(api: Api, browser: Browser) -> str:
    page = browser.open(connect_url(api))
    form = browser.post({"page_token": page_token(page, api), "step": "choose", "provider": "demo-apikey"})
    assert form.status == 200, form.body
    assert '<label for="field-api_key">Demo API key</label>' in form.body
    assert 'type="password"' in form.body and 'pattern="dk_[A-Za-z0-9_]{8,64}"' in form.body
    return page_token(form, api)


def test_a_good_api_key_is_checked_at_the_provider_and_saved(demo_api: Api, provider, db) -> None:
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)

    done = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY})

    assert done.status == 200, done.body
    assert "Connected" in done.body and GOOD_KEY not in done.body
    connection_id = query_of(re.search(r'href="([^"]+)"', done.body).group(1).replace("&amp;", "&"))
    stored = stored_connection(db, connection_id["connection_id"])
    assert stored.credentials == ApiKeyCredentials(stored.credentials.api_key)
    assert stored.credentials.api_key.reveal() == GOOD_KEY
    assert provider.stats().token_calls["api_key_check"] == 1


def test_a_refused_api_key_is_explained_never_echoed_and_not_saved(demo_api: Api, db) -> None:
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)
    before = db_state(db)

    refused = browser.post(
        {"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": REFUSED_KEY}
    )

    assert refused.status == 400
    assert "refused these credentials" in refused.body
    assert REFUSED_KEY not in refused.body
    assert db_state(db)["connections"] == before["connections"]
    again = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY})
    assert again.status == 200, "the end user can correct the key on the same page"


def test_a_key_that_misses_the_catalog_pattern_is_refused_before_any_provider_call(demo_api: Api, provider) -> None:
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)

    refused = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": "nope"})

    assert refused.status == 400
    assert 'aria-invalid="true"' in refused.body
    assert "api_key_check" not in provider.stats().token_calls


def test_a_provider_that_cannot_answer_the_check_asks_to_try_again(demo_api: Api, provider) -> None:
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)
    provider.stop()

    answer = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY})

    assert answer.status == 400
    assert "could not check" in answer.body


def test_choosing_a_provider_the_link_does_not_offer_explains_it(demo_api: Api) -> None:
    browser = Browser(demo_api)
    token = page_token(browser.open(connect_url(demo_api, providers=["demo"])), demo_api)

    for slug in ("demo-apikey", "github", "../etc", ""):
        page = browser.post({"page_token": token, "step": "choose", "provider": slug})
        assert page.status == 400, slug
        assert "not offered by this link" in page.body


def test_an_oauth_integration_deleted_after_the_link_was_made_is_explained(demo_api: Api) -> None:
    browser = Browser(demo_api)
    token = page_token(browser.open(connect_url(demo_api)), demo_api)
    assert demo_api.call("DELETE", "/integrations/demo").status == 204

    page = browser.post({"page_token": token, "step": "choose", "provider": "demo"})

    assert page.status == 400
    assert "cannot be reached right now" in page.body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"page_token": "x"}', "application/json"),
        ("page_token=a&page_token=b", "application/x-www-form-urlencoded"),
        ("step=%ff%fe", "application/x-www-form-urlencoded"),
        ("a=" + "x" * 40_000, "application/x-www-form-urlencoded"),
        ("&".join(f"f{i}=1" for i in range(40)), "application/x-www-form-urlencoded"),
        ("", "multipart/form-data"),
    ],
)
def test_a_body_that_is_not_a_plain_form_gets_a_page_and_writes_nothing(demo_api: Api, db, body, content_type):
    before = db_state(db)
    event = http_event("POST", "/connect", body=body, headers={"content-type": content_type})

    raw = demo_api.invoke_raw("connect_page", event)

    assert raw["statusCode"] == 400
    assert raw["headers"]["Content-Type"].startswith("text/html")
    assert db_state(db) == before


def test_a_stale_page_token_is_explained(demo_api: Api) -> None:
    page = Browser(demo_api).post({"page_token": "stale-or-forged-token", "step": "choose", "provider": "demo"})

    assert page.status == 410
    assert "already used" in page.body


# -- the tenant's settings ----------------------------------------------------------------------------------


def test_frame_ancestors_and_display_name_come_from_the_tenants_settings(demo_api: Api) -> None:
    saved = demo_api.call(
        "PUT",
        "/connect-settings",
        body={
            "display_name": "Initech",
            "frame_ancestors": ["https://app.initech.example", "HTTPS://Portal.Initech.example:8443/"],
            "allowed_return_urls": [DEMO_RETURN_URL],
        },
    )
    page = Browser(demo_api).open(connect_url(demo_api))

    assert saved.status == 200, saved.body
    assert saved.json()["frame_ancestors"] == ["https://app.initech.example", "https://portal.initech.example:8443"]
    assert "Initech" in page.body
    assert (
        "frame-ancestors https://app.initech.example https://portal.initech.example:8443"
        in page.headers["Content-Security-Policy"]
    )
    assert "X-Frame-Options" not in page.headers


@pytest.mark.parametrize(
    "origin",
    [
        "http://app.example.com",
        "https://*.example.com",
        "https://app.example.com/path",
        "https://app.example.com; script-src *",
        "'unsafe-inline'",
        "https://a b.example",
        "*",
    ],
)
def test_an_origin_that_could_widen_the_policy_is_refused(demo_api: Api, origin: str) -> None:
    answer = demo_api.call("PUT", "/connect-settings", body={"frame_ancestors": [origin]})

    assert answer.status == 400
    assert answer.json()["error"]["field"] == "frame_ancestors"


def test_an_unreachable_database_gets_a_retry_page_not_json(demo_api: Api, reconfigure) -> None:
    url = connect_url(demo_api)
    reconfigure(database_url="postgresql+pg8000://postgres@/postgres?unix_sock=/nonexistent/.s.PGSQL.5432")

    page = Browser(demo_api).open(url)

    assert page.status == 503
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Retry-After"] == "1"
    assert "Try again in a moment" in page.body


def test_an_oauth_flow_started_before_the_link_was_finished_stores_nothing(demo_api: Api, provider, db) -> None:
    """An outside probe: two tabs of one link (an OAuth flow in one, the API key in the other) made two
    connections from a link that is used once. The flow that finishes last stores nothing, and its grant is revoked."""
    browser = Browser(demo_api)
    page = browser.open(connect_url(demo_api))
    redirect = browser.post({"page_token": page_token(page, demo_api), "step": "choose", "provider": "demo"})
    form = browser.post({"page_token": page_token(page, demo_api), "step": "choose", "provider": "demo-apikey"})
    done = browser.post(
        {
            "page_token": page_token(form, demo_api),
            "step": "credentials",
            "provider": "demo-apikey",
            "api_key": GOOD_KEY,
        }
    )
    assert done.status == 200, done.body

    landed = demo_api.callback(follow_authorize(redirect.headers["Location"], demo_api.secrets))

    assert "Connected" not in landed.body
    assert connection_count(db) == 1
    assert len(provider.stats().revoked) == 1


# -- quotas and limits (outside probe, 2026-11-30) ------------------------------------------------------------


def test_an_api_key_past_the_connection_quota_gets_a_clear_page_and_stores_nothing(
    demo_api: Api, provider, db, reconfigure
) -> None:
    """An outside probe: a tenant at its connection quota (409 on POST /connections) added connections without
    bound through links, since the page saved the key without asking the quota."""
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)
    reconfigure(quota_connections=0)
    before = db_state(db)

    full = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY})

    assert full.status == 400, full.body
    assert "cannot take new connections" in full.body
    assert db_state(db)["connections"] == before["connections"]
    assert "api_key_check" not in provider.stats().token_calls, "no provider call when nothing can be saved"


def test_a_reconnect_through_the_page_needs_no_room_in_the_quota(demo_api: Api, reconfigure) -> None:
    first = Browser(demo_api)
    done = first.post(
        {"page_token": key_form(demo_api, first), "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY}
    )
    assert done.status == 200, done.body
    reconfigure(quota_connections=1)

    again = Browser(demo_api)
    replaced = again.post(
        {"page_token": key_form(demo_api, again), "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY}
    )

    assert replaced.status == 200, replaced.body
    assert "Connected" in replaced.body


def oauth_session_count(db: TestDatabase) -> int:
    with owner(db) as sql:
        return sql.run("SELECT count(*) FROM oauth_sessions")[0][0]


def test_choosing_again_replaces_the_pages_oauth_attempt_so_one_link_holds_one_session(demo_api: Api, db) -> None:
    """An outside probe: every click on an OAuth provider made a connect session, so 10,000 clicks on one link
    held the tenant's whole quota of connect sessions (its own POST /connect-sessions got 409)."""
    browser = Browser(demo_api)
    token = page_token(browser.open(connect_url(demo_api)), demo_api)

    redirects = [browser.post({"page_token": token, "step": "choose", "provider": "demo"}) for _ in range(5)]

    assert [redirect.status for redirect in redirects] == [303] * 5
    assert oauth_session_count(db) == 1
    abandoned = demo_api.callback(follow_authorize(redirects[0].headers["Location"], demo_api.secrets))
    assert "Connected" not in abandoned.body, "the attempt chosen again over no longer works"
    landed = demo_api.callback(follow_authorize(redirects[-1].headers["Location"], demo_api.secrets))
    assert landed.status == 200, landed.body
    assert "Connected" in landed.body, "the end user who went back and chose again connects"


def test_clicks_on_a_link_leave_the_tenant_its_quota_of_connect_sessions(demo_api: Api, reconfigure) -> None:
    reconfigure(quota_connect_sessions=2)
    browser = Browser(demo_api)
    token = page_token(browser.open(connect_url(demo_api)), demo_api)

    for _ in range(10):
        assert browser.post({"page_token": token, "step": "choose", "provider": "demo"}).status == 303

    own = start_connect(demo_api)
    assert own.status == 201, own.body


def test_a_full_quota_of_connect_sessions_is_a_clear_page_not_a_500(demo_api: Api, reconfigure) -> None:
    reconfigure(quota_connect_sessions=1)
    browser = Browser(demo_api)
    token = page_token(browser.open(connect_url(demo_api)), demo_api)
    assert start_connect(demo_api).status == 201  # the tenant's own session takes the one place

    page = browser.post({"page_token": token, "step": "choose", "provider": "demo"})

    assert page.status == 400, page.body
    assert "cannot take new connections" in page.body
    assert 'value="demo-apikey"' in page.body, "the end user may still choose a provider that needs no session"


def test_a_page_checks_a_few_wrong_keys_then_refuses_more_without_asking_the_provider(
    demo_api: Api, provider, db
) -> None:
    """An outside probe: 60 wrong keys with one page token made 60 provider calls (an unthrottled oracle)."""
    browser = Browser(demo_api)
    token = key_form(demo_api, browser)
    wrong = [f"dk_guess{i:08d}" for i in range(8)]
    demo_api.secrets.add(*wrong)

    answers = [
        browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": key})
        for key in wrong
    ]
    right = browser.post({"page_token": token, "step": "credentials", "provider": "demo-apikey", "api_key": GOOD_KEY})

    assert ["refused these credentials" in answer.body for answer in answers] == [True] * 5 + [False] * 3
    assert all("Too many attempts" in answer.body for answer in [*answers[5:], right])
    assert "api_key_check" not in provider.stats().token_calls, "the right key, past the limit, was not checked"
    assert right.status == 400
    assert connection_count(db) == 0


def test_a_custom_authorization_url_reaches_the_pages_headers_in_ascii_only(demo_api: Api, provider) -> None:
    """An outside probe: non-ASCII and spaces in a custom provider's authorization_url reached the page's CSP and
    its 303 Location raw, and the dev server crashed writing the header."""
    custom = {
        "authorization_url": provider.base_url + "/authorize/café x\u2028",
        "token_url": provider.base_url + "/token",
    }
    defined = demo_api.call("PUT", "/integrations/mine", body={"client_id": "demo-client", "custom_provider": custom})
    assert defined.status in (200, 201), defined.body
    browser = Browser(demo_api)
    page = browser.open(connect_url(demo_api, providers=["mine", "demo"]))

    redirect = browser.post({"page_token": page_token(page, demo_api), "step": "choose", "provider": "mine"})

    assert page.headers["Content-Security-Policy"].isascii()
    assert redirect.status == 303, redirect.body
    location = redirect.headers["Location"]
    demo_api.secrets.add(*parse_qs(urlsplit(location).query)["state"])
    assert location.isascii() and " " not in location
    assert urlsplit(location).path == "/authorize/caf%C3%A9%20x%E2%80%A8"
