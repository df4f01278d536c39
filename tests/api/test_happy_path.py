"""The whole life of a connection through the real handlers: connect, fetch, refresh, delete."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.api.conftest import DEMO_RETURN_URL, Api, follow_authorize


def test_a_connection_goes_from_connect_session_to_token_to_deletion(api: Api, provider, secrets) -> None:
    started = api.call(
        "POST", "/connect-sessions", body={"provider": "demo", "end_user_id": "user-1", "return_url": DEMO_RETURN_URL}
    )
    assert started.status == 201, started.body
    authorize_url = started.json()["authorize_url"]
    secrets.add(parse_qs(urlsplit(authorize_url).query)["state"][0])

    landed = api.callback(follow_authorize(authorize_url, secrets))
    assert landed.status == 302, landed.body
    back = urlsplit(landed.headers["Location"])
    assert back.geturl().startswith(DEMO_RETURN_URL)
    connection_id = parse_qs(back.query)["connection_id"][0]

    token = api.call("GET", f"/connections/{connection_id}/token")
    assert token.status == 200, token.body
    assert token.headers["Cache-Control"] == "no-store"
    first = token.json()["access_token"]
    secrets.add(first)
    assert provider.access_token_is_active(first)

    refreshed = api.call("GET", f"/connections/{connection_id}/token", query={"force_refresh": "true"})
    assert refreshed.status == 200, refreshed.body
    assert refreshed.json()["access_token"] != first
    secrets.add(refreshed.json()["access_token"])

    listed = api.call("GET", "/connections")
    assert [item["id"] for item in listed.json()["items"]] == [connection_id]
    assert "access_token" not in listed.body

    deleted = api.call("DELETE", f"/connections/{connection_id}")
    assert deleted.status == 200, deleted.body
    assert deleted.json()["revocation"] == "succeeded"
    assert api.call("GET", f"/connections/{connection_id}").status == 404
