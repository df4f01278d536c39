"""The items of ``docs/security.md`` (OAuth 2.0 Security BCP, RFC 9700) that no other test proves by name.

The rest of the checklist points at the tests that already prove it; each test here is named for its item.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connvault.config import Settings
from demo_provider import DemoProvider
from devserver.demo_setup import DEMO_RETURN_URL
from tests.api.conftest import Api, connect_account, follow_authorize, pending_verifiers, start_connect
from tests.support.database import TestDatabase
from tests.support.factories import owner
from tests.support.secrets import SecretRegistry

TABLES = ("tenants", "tenant_api_keys", "providers", "integrations", "connections", "oauth_sessions")
STATIC_KEY = "sk-checklist-" + "k" * 32


def database_dump(db: TestDatabase) -> str:
    """Every value of every row connvault writes, bytea as raw bytes (latin-1, so ASCII secrets match as text)."""
    parts = []
    with owner(db) as sql:
        for table in TABLES:
            for row in sql.run(f"SELECT * FROM {table}"):
                parts.extend(
                    value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value) for value in row
                )
    return "\n".join(parts)


def test_state_and_pkce_verifier_are_stored_only_as_a_hash_and_sealed(
    api: Api, db: TestDatabase, secrets: SecretRegistry
) -> None:
    # Given a connect session waiting for its callback (start_connect registers its state and verifier)
    started = start_connect(api)
    assert started.status == 201, started.body
    state = parse_qs(urlsplit(started.json()["authorize_url"]).query)["state"][0]
    assert pending_verifiers(api.tenant.tenant_id)

    # Then neither is anywhere in the database in the clear; the state is there as its SHA-256 only
    secrets.check(database_dump(db), "the database")
    with owner(db) as sql:
        found = sql.run(
            "SELECT count(*) FROM oauth_sessions WHERE state_sha256 = sha256(convert_to(:s, 'UTF8'))", s=state
        )
    assert found[0][0] == 1


def test_a_connect_session_lives_ten_minutes_by_default(api: Api, db: TestDatabase) -> None:
    started = start_connect(api)

    lifetime = datetime.fromisoformat(started.json()["expires_at"]) - datetime.now(UTC)
    assert Settings().connect_session_ttl_seconds == 600
    assert 590 <= lifetime.total_seconds() <= 600
    with owner(db) as sql:
        stored = sql.run("SELECT expires_at - created_at FROM oauth_sessions")[0][0]
    assert 599 <= stored.total_seconds() <= 601


@pytest.mark.parametrize(
    "near_miss",
    [
        DEMO_RETURN_URL + "/",
        DEMO_RETURN_URL + "?next=https://evil.example",
        DEMO_RETURN_URL + "#fragment",
        DEMO_RETURN_URL + "/../done",
        DEMO_RETURN_URL[:-1],
        DEMO_RETURN_URL.replace("http://", "HTTP://"),
        DEMO_RETURN_URL.replace("127.0.0.1", "localhost"),
        DEMO_RETURN_URL + "%2F",
    ],
)
def test_the_return_url_must_match_an_allowed_url_exactly(api: Api, near_miss: str) -> None:
    answer = start_connect(api, return_url=near_miss)

    assert answer.status == 400, answer.body
    assert answer.json()["error"]["field"] == "return_url"


def test_the_authorize_url_carries_state_and_an_s256_challenge_but_no_client_secret_or_verifier(
    api: Api, provider: DemoProvider, secrets: SecretRegistry
) -> None:
    started = start_connect(api)

    url = started.json()["authorize_url"]
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://127.0.0.1:3000/oauth/callback"]
    assert "client_secret" not in query and "code_verifier" not in query
    for verifier in pending_verifiers(api.tenant.tenant_id):
        assert verifier not in url
    secrets.add(provider.settings.client_secret)
    assert provider.settings.client_secret not in url
    assert started.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("outcome", ["connected", "unknown_state"])
def test_callback_answers_are_neither_cached_nor_passed_on_as_a_referer(
    api: Api, secrets: SecretRegistry, outcome: str
) -> None:
    if outcome == "connected":
        answer = api.callback(follow_authorize(start_connect(api).json()["authorize_url"], secrets))
        assert answer.status == 302
        assert set(parse_qs(urlsplit(answer.headers["Location"]).query)) == {"connection_id"}
    else:
        answer = api.callback("state=nobody-issued-this-state&code=some-code")
        assert answer.status == 400
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_no_token_client_secret_or_api_key_is_stored_in_the_clear(
    api: Api, provider: DemoProvider, db: TestDatabase, secrets: SecretRegistry
) -> None:
    # Given an OAuth connection, an API-key connection, a client secret and a pending connect
    secrets.add(STATIC_KEY)
    connect_account(api)
    static = api.call("POST", "/connections", body={"provider": "openai", "end_user_id": "u", "api_key": STATIC_KEY})
    assert static.status == 201, static.body
    assert api.call("GET", f"/connections/{connect_account(api, alias='second')}/token").status == 200
    assert start_connect(api).status == 201
    stats = provider.stats()
    secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)

    # Then none of those secrets is in any row, in any form the database holds it (the dump does see values)
    dump = database_dump(db)
    assert provider.settings.client_id in dump
    secrets.check(dump, "the database")


def test_every_test_the_checklist_names_exists() -> None:
    """``docs/security.md`` cites tests as `path::name` (or `::name`, same file as the last path); none may rot."""
    root = Path(__file__).resolve().parents[2]
    cited = re.findall(r"`((?:tests/[\w/]+\.py)?(?:::\w+)?)`", (root / "docs" / "security.md").read_text())
    missing, current = [], None
    for reference in filter(None, cited):
        path, _, name = reference.partition("::")
        current = path or current
        assert current is not None, reference
        source = root / current
        if not source.exists() or (name and f"def {name}(" not in source.read_text()):
            missing.append(f"{current}::{name}")
    assert missing == []
    assert len(cited) > 40
