"""New tokens for a connection without its end user: the one step of a refresh that depends on the kind.

The refresh engine (``services/refresh.py``) owns single flight: every lease transition of
``services/leases.py`` (take, store the answer so a rotated token is never lost, record a failure), and the
runner and the token route go through it. What it asks the provider for depends on
how the connection was made, and is decided here:

* a refresh token (``authorization_code``, ``device_code``, ``imported``): RFC 6749 §6, as the tenant's app;
* ``client_credentials``: a new client-credentials request (RFC 6749 §4.4), as the connection's own client
  or the tenant's app;
* ``jwt_bearer``: a new assertion signed with the service account's key (RFC 7523 §2.1).

So every kind is served by the same token route, with the same single flight and ``min_ttl``, and renewed
ahead by the same runner. Raises what the OAuth client raises: ``ReauthRequired`` (its subclass
``ClientRejected`` only for the tenant's app), ``ProviderRejected``, ``ProviderUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connvault.errors import ClientRejected, IntegrationCredentialsInvalid, IntegrationMissing, ReauthRequired
from connvault.models import ClientCredentialsGrant, IntegrationStatus, JwtBearerGrant, OAuth2Credentials

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from connvault.models import ClientCredentials, Credentials, Integration, OAuth2Tokens, Provider
    from connvault.oauth.client import OAuthClient


@dataclass(frozen=True, slots=True)
class Renewal:
    """What the provider answered, and the credentials to store from it."""

    tokens: OAuth2Tokens
    credentials: OAuth2Credentials


def renew(
    credentials: Credentials | None,
    provider: Provider,
    integration: Integration | None,
    oauth: OAuthClient,
    now: datetime,
) -> Renewal:
    """Ask ``provider`` for new tokens the way ``credentials`` renew; ``integration`` is the tenant's app
    there (None once it is deleted).

    ``ClientRejected`` means the integration's client was refused, and only that: a connection's own client or
    service-account key that the provider refuses is this connection's failure, ``ReauthRequired``. An
    integration already marked refused is ``IntegrationCredentialsInvalid``, and a deleted one ``IntegrationMissing``,
    with no provider call: either way the connection keeps its grant and waits for the tenant's app.
    """
    if not isinstance(credentials, OAuth2Credentials):
        raise ReauthRequired("the connection cannot be renewed", reason="no_refresh_token")
    grant = credentials.grant
    if isinstance(grant, JwtBearerGrant):
        tokens = _as_own(lambda: oauth.jwt_bearer(provider, grant, now))
    elif isinstance(grant, ClientCredentialsGrant) and grant.client is not None:
        own = grant.client
        tokens = _as_own(lambda: oauth.client_credentials(provider, grant, own, now))
    elif isinstance(grant, ClientCredentialsGrant):
        tokens = oauth.client_credentials(provider, grant, _integration_client(integration), now)
    else:
        client = _integration_client(integration)
        if credentials.refresh_token is None:
            raise ReauthRequired("the connection has no refresh token", reason="no_refresh_token")
        tokens = oauth.refresh(provider, client, credentials.refresh_token.reveal(), now)
    return Renewal(tokens, credentials.with_refreshed(tokens))


def _integration_client(integration: Integration | None) -> ClientCredentials:
    if integration is None:
        raise IntegrationMissing("the provider's integration was deleted; refreshes wait until it is set up again")
    if integration.status is IntegrationStatus.INVALID_CREDENTIALS:
        raise IntegrationCredentialsInvalid("the provider refused the integration's client credentials")
    return integration.client


def _as_own(request: Callable[[], OAuth2Tokens]) -> OAuth2Tokens:
    """``request`` with the connection's own client or key: a refused one is the connection's failure."""
    try:
        return request()
    except ClientRejected as exc:
        raise ReauthRequired("the provider refused the connection's own credentials", reason=exc.reason) from None


def revoking_client(credentials: Credentials | None, integration: ClientCredentials | None) -> ClientCredentials | None:
    """The client that may revoke this connection's tokens: the connection's own, else the tenant's app. A
    service account has none (its tokens simply expire), nor has a client-credentials grant on a token endpoint
    of its own: the provider's revocation endpoint did not issue its tokens, and its client secret was given for
    that endpoint alone (an outside probe on 2026-11-30 saw it sent to the catalog's)."""
    if not isinstance(credentials, OAuth2Credentials):
        return None
    grant = credentials.grant
    if isinstance(grant, JwtBearerGrant) or (isinstance(grant, ClientCredentialsGrant) and grant.token_url):
        return None
    if isinstance(grant, ClientCredentialsGrant) and grant.client is not None:
        return grant.client
    return integration


def renews_with_refresh_token(credentials: Credentials | None) -> bool:
    """Whether renewing presents a refresh token, which a rotating provider spends: a grant presents the same
    client or key every time, so an interrupted renewal of one loses nothing."""
    return isinstance(credentials, OAuth2Credentials) and credentials.grant is None
