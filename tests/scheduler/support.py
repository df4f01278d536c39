"""Connections whose tokens a running ``DemoProvider`` really issued, for the scheduler tests and the bench.

The demo provider only accepts refresh tokens it issued, so tokens are minted through its real
authorization-code flow (``/authorize`` then ``/token``). Its catalog row is a global one (tenant_id NULL)
inserted by the schema owner, because the catalog has no write path of its own; callers delete it again.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import urllib3

from connvault.db.connections import NewCredentials
from connvault.db.target import DatabaseTarget
from connvault.db.uow import UnitOfWork
from connvault.models import AuthType, ClientCredentials, OAuth2Credentials, OAuth2Tokens, Provider
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.redacted import Redacted
from connvault.services.integrations import IntegrationInput, save_integration
from demo_provider import DemoProvider

REDIRECT_URI = "http://127.0.0.1:9/callback"

type Register = Callable[..., None]


def add_global_provider(
    owner: DatabaseTarget, demo: DemoProvider, *, max_concurrent_refreshes: int | None = None
) -> Provider:
    """A global catalog entry for ``demo`` (rotating refresh tokens), with a random slug."""
    base = demo.base_url
    slug = f"demo-{uuid.uuid4().hex[:10]}"
    connection = owner.connect()
    try:
        rows = connection.run(
            "INSERT INTO providers (slug, display_name, auth_type, authorization_url, token_url, revocation_url,"
            " pkce, rotates_refresh_tokens, max_concurrent_refreshes)"
            " VALUES (:slug, 'Demo', 'oauth2', :authorize, :token, :revoke, false, true, :cap) RETURNING id",
            slug=slug,
            authorize=f"{base}/authorize",
            token=f"{base}/token",
            revoke=f"{base}/revoke",
            cap=max_concurrent_refreshes,
        )
    finally:
        connection.close()
    return Provider(
        id=rows[0][0],
        slug=slug,
        display_name="Demo",
        auth_type=AuthType.OAUTH2,
        authorization_url=f"{base}/authorize",
        token_url=f"{base}/token",
        revocation_url=f"{base}/revoke",
        pkce=False,
        rotates_refresh_tokens=True,
        max_concurrent_refreshes=max_concurrent_refreshes,
    )


def remove_provider(owner: DatabaseTarget, provider_id: uuid.UUID) -> None:
    """Delete a catalog entry and, by cascade, its integrations and connections."""
    connection = owner.connect()
    try:
        connection.run("DELETE FROM providers WHERE id = :id", id=provider_id)
    finally:
        connection.close()


def add_integration(tenant_id: uuid.UUID, provider: Provider, demo: DemoProvider) -> None:
    """The tenant's OAuth app at ``demo``, with the demo's client credentials."""
    secret = demo.settings.client_secret
    save_integration(
        UnitOfWork(tenant_id),
        provider.slug,
        IntegrationInput(client_id=demo.settings.client_id, client_secret=Redacted(secret) if secret else None),
    )


def mint_grants(
    demo: DemoProvider, provider: Provider, count: int, *, register: Register, threads: int = 8
) -> list[OAuth2Tokens]:
    """``count`` token sets through the demo's authorization-code flow; every token goes to ``register``."""
    secret = demo.settings.client_secret
    client = ClientCredentials(demo.settings.client_id, Redacted(secret) if secret else None)
    transport = HttpTransport(5.0, maxsize=threads)
    oauth = OAuthClient(transport)
    browser = urllib3.PoolManager(maxsize=threads, retries=False)

    def mint(index: int) -> OAuth2Tokens:
        url = oauth.authorize_url(provider, client.client_id, REDIRECT_URI, ("read",), f"state-{index}", None)
        answer = browser.request("GET", url, redirect=False, timeout=5.0)
        code = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))["code"]
        tokens = oauth.exchange_code(provider, client, code, REDIRECT_URI, None, datetime.now(UTC))
        register(
            code,
            tokens.access_token.reveal(),
            tokens.refresh_token.reveal() if tokens.refresh_token else None,
        )
        return tokens

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(mint, range(count)))
    finally:
        transport.close()
        browser.clear()


def add_connections(
    tenant_id: uuid.UUID,
    provider: Provider,
    grants: Sequence[OAuth2Tokens],
    *,
    expires_at: datetime | None,
    end_user_prefix: str = "user",
    spread_seconds: float = 0.0,
    chunk: int = 250,
) -> list[uuid.UUID]:
    """Active connections holding ``grants``, expiring at ``expires_at`` (None: a non-expiring token) plus a
    random part of ``spread_seconds`` each, as tokens issued over a while would. Each was granted as long
    before its expiry as the provider's tokens live, so its lifetime is the provider's, not what is left."""
    ids: list[uuid.UUID] = []
    for start in range(0, len(grants), chunk):
        with UnitOfWork(tenant_id) as uow:
            for index, tokens in enumerate(grants[start : start + chunk], start=start):
                now = datetime.now(UTC)
                expiry = expires_at and expires_at + timedelta(seconds=random.uniform(0, spread_seconds))
                lifetime = tokens.expires_at - now if tokens.expires_at is not None else None
                connection = uow.connections.add(
                    tenant_id,
                    provider.id,
                    end_user_id=f"{end_user_prefix}-{index}",
                    alias="",
                    grant=NewCredentials(
                        credentials=OAuth2Credentials(tokens.access_token, tokens.refresh_token, tokens.id_token),
                        token_type=tokens.token_type,
                        scopes=tokens.scopes or ("read",),
                        expires_at=expiry,
                    ),
                    granted_at=expiry - lifetime if expiry is not None and lifetime is not None else now,
                    metadata={},
                )
                ids.append(connection.id)
            uow.commit()
    return ids


def register_issued(demo: DemoProvider, register: Register) -> None:
    """Every token the demo ever issued that is still known to it, so the secret scanner looks for them too."""
    stats = demo.stats()
    register(*stats.access_tokens, *stats.live_refresh_tokens)
