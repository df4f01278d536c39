"""A running demo provider, an OAuth client pointed at it, and a browser stand-in for /authorize."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from uuid import uuid4

import pytest
import urllib3

from connvault.models import AuthType, ClientCredentials, Provider
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.oauth.pkce import code_challenge_s256, new_code_verifier, new_state
from connvault.redacted import Redacted
from demo_provider import DemoProvider
from tests.oauth.flows import REDIRECT_URI, Redirect


@pytest.fixture
def demo() -> Iterator[DemoProvider]:
    with DemoProvider() as provider:
        yield provider


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    transport = HttpTransport(deadline_seconds=2.0, maxsize=16)
    yield transport
    transport.close()


@pytest.fixture
def make_transport() -> Iterator[Callable[..., HttpTransport]]:
    """Transports with other limits (short timeouts, small bodies), closed after the test."""
    made: list[HttpTransport] = []

    def make(**limits: Any) -> HttpTransport:
        made.append(HttpTransport(**{"deadline_seconds": 2.0, **limits}))
        return made[-1]

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def oauth(transport: HttpTransport) -> OAuthClient:
    return OAuthClient(transport)


@pytest.fixture
def catalog_entry(demo: DemoProvider) -> Callable[..., Provider]:
    """A catalog entry for the demo provider; keyword arguments override fields."""

    def make(**overrides: Any) -> Provider:
        base = demo.base_url
        fields: dict[str, Any] = {
            "id": uuid4(),
            "slug": "demo",
            "display_name": "Demo",
            "auth_type": AuthType.OAUTH2,
            "authorization_url": f"{base}/authorize",
            "token_url": f"{base}/token",
            "revocation_url": f"{base}/revoke",
            "default_scopes": ("read",),
            "issuer": base,
        }
        return Provider(**(fields | overrides))

    return make


@pytest.fixture
def credentials(demo: DemoProvider) -> ClientCredentials:
    secret = demo.settings.client_secret
    return ClientCredentials(demo.settings.client_id, Redacted(secret) if secret is not None else None)


@pytest.fixture
def authorize(oauth: OAuthClient) -> Callable[..., Redirect]:
    """Play the browser: open the authorize URL and read the redirect the provider answers."""

    def run(provider: Provider, client_id: str, scopes: Sequence[str] = ("read",), *, pkce: bool = True) -> Redirect:
        state = new_state()
        verifier = new_code_verifier() if pkce else None
        challenge = code_challenge_s256(verifier) if verifier is not None else None
        url = oauth.authorize_url(provider, client_id, REDIRECT_URI, scopes, state, challenge)
        response = urllib3.request("GET", url, redirect=False, retries=False, timeout=2.0)
        assert response.status == 302
        location = urlsplit(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        return Redirect(dict(parse_qsl(location.query)), state, verifier)

    return run
