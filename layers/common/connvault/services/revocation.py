"""Revoking grants at the provider (RFC 7009): best effort, recorded, and only where it cannot hurt a live grant.

A delete revokes what the connection holds whatever the provider's revocation scope: the end user's data is going
anyway. A reconnect revokes the grant it replaced, unless the provider's ``revocation_scope`` is ``authorization``
(revoking any token ends every grant of the client for that user, as Google does): there the new grant, made by the
same client for the same user, would die with the old one. Nor is a token revoked that the provider handed out
again (a non-rotating refresh token may come back unchanged from a second consent).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from connvault import connection_config
from connvault.models import OAuth2Credentials, RevocationScope
from connvault.observability import MetricName, logger, metrics
from connvault.services.renewal import revoking_client

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.db.connections import SavedGrant
    from connvault.models import ClientCredentials, Integration, Provider
    from connvault.oauth.client import OAuthClient


class ReplacedGrant(StrEnum):
    """What became of the grant a reconnect replaced; logged with the connection's id."""

    REVOKED = "revoked"
    FAILED = "failed"
    """The provider refused or did not answer; counted as ``revocation_failed``."""
    SAME_GRANT = "same_grant"
    """The provider handed the same token out again: revoking it would end the new grant."""
    AUTHORIZATION_SCOPE = "authorization_scope"
    """The provider's revocation ends every grant of the client for the user, the new one included."""
    NOT_SUPPORTED = "not_supported"
    """Nothing to revoke with: no revocation endpoint, no client that may revoke (no integration, a service
    account, a grant from a token endpoint of its own), or not an OAuth grant."""
    UNREADABLE = "unreadable"
    """The replaced envelope could not be opened, so its tokens are unknown."""
    ISSUER_LEFT = "issuer_left"
    """The provider's endpoints moved away from the server that issued the replaced grant: its tokens go nowhere
    (``connection_status.issuer_left``)."""


def revoke_grant(
    oauth: OAuthClient,
    provider: Provider,
    client: ClientCredentials,
    credentials: OAuth2Credentials,
    connection_id: UUID,
) -> bool:
    """Revoke ``credentials`` (the refresh token, which takes the grant with it, else the access token); a
    failure is counted and logged with ids only."""
    token, hint = credentials.revocation_target()
    revoked = oauth.revoke(provider, client, token.reveal(), hint)
    if not revoked:
        metrics.add_metric(name=MetricName.REVOCATION_FAILED, unit="Count", value=1)
        logger.info("revocation failed", extra={"connection_id": str(connection_id), "provider": provider.slug})
    return revoked


def retire_replaced_grant(
    oauth: OAuthClient, provider: Provider, integration: Integration | None, saved: SavedGrant
) -> ReplacedGrant | None:
    """After a reconnect committed: revoke the grant it replaced where that is safe (see the module docstring), at
    the hosts of that grant's own ``connection_config`` (``provider`` is the catalog's, placeholders unfilled).
    None when nothing was replaced (a new connection)."""
    if saved.replaced is None and not saved.replaced_unreadable:
        return None
    outcome = _retire(oauth, connection_config.for_revocation(provider, saved.replaced_config), integration, saved)
    logger.info(
        "reconnect replaced a grant",
        extra={"connection_id": str(saved.connection.id), "provider": provider.slug, "replaced_grant": outcome.value},
    )
    return outcome


def _retire(
    oauth: OAuthClient, provider: Provider, integration: Integration | None, saved: SavedGrant
) -> ReplacedGrant:
    old, new = saved.replaced, saved.connection.credentials
    if saved.replaced_unreadable:
        return ReplacedGrant.UNREADABLE
    if saved.replaced_issuer_left:
        return ReplacedGrant.ISSUER_LEFT
    # The client that may revoke the replaced grant, as a delete picks it: none for one minted on a token endpoint
    # of its own, whose tokens the provider's revocation endpoint did not issue.
    client = revoking_client(old, integration.client if integration is not None else None)
    if not isinstance(old, OAuth2Credentials) or provider.revocation_url is None or client is None:
        return ReplacedGrant.NOT_SUPPORTED
    if isinstance(new, OAuth2Credentials) and _shares_a_token(old, new):
        return ReplacedGrant.SAME_GRANT
    if provider.revocation_scope is RevocationScope.AUTHORIZATION:
        return ReplacedGrant.AUTHORIZATION_SCOPE
    revoked = revoke_grant(oauth, provider, client, old, saved.connection.id)
    return ReplacedGrant.REVOKED if revoked else ReplacedGrant.FAILED


def _shares_a_token(old: OAuth2Credentials, new: OAuth2Credentials) -> bool:
    """Whether the token revocation would name for ``old`` is still one of ``new``'s."""
    target, _ = old.revocation_target()
    held = {token.reveal() for token in (new.access_token, new.refresh_token) if token is not None}
    return target.reveal() in held
