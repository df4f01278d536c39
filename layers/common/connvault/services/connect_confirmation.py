"""Confirmed connect sessions: binding the account that came back from the provider to the user who started.

Without confirmation, whoever opens a connect link attaches *their* provider account to the tenant's end user: a
link forwarded, leaked or planted (a phishing mail with the tenant's real link) connects the wrong account. With
``require_confirmation`` the callback parks the grant and sends the end user's browser back to the tenant's return
URL with ``connect_session_id`` and a one-time ``confirmation`` code. The tenant's backend checks that the user
signed in there is the one it started the session for, then calls ``POST /connect-sessions/{id}/confirm`` with the
code; only then does the connection exist. A grant nobody confirms before the session expires is revoked at the
provider (``revoke_unconfirmed``, run by the scheduled events function) and dropped. See docs/security.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connvault import connection_config, wiring
from connvault.clock import Clock, utcnow
from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput, NotFound
from connvault.oauth.pkce import state_digest
from connvault.observability import MetricName, logger, metrics
from connvault.services.connect import MAX_STATE_LENGTH, store_grant
from connvault.services.revocation import retire_replaced_grant

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connect_confirmations import ParkedGrant
    from connvault.models import Connection, Integration, Provider
    from connvault.oauth.client import OAuthClient
    from connvault.redacted import Redacted

SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class SweepReport:
    revoked: int = 0
    dropped: int = 0
    """Unconfirmed grants dropped without a successful revocation (the provider has no revocation endpoint, the
    integration is gone, or the provider refused)."""


def confirm(
    uow: UnitOfWork, session_id: UUID, code: Redacted[str], *, oauth: OAuthClient | None = None, now: Clock = utcnow
) -> Connection:
    """Turn a parked grant into the connection (revoking the grant it replaces, as a reconnect does). The code works
    once, for its session, before the session expires; anything else is ``NotFound`` (which of those it was is not
    said)."""
    presented = code.reveal()
    if not presented or len(presented) > MAX_STATE_LENGTH:
        raise InvalidInput("confirmation must be the code the return URL received", field="confirmation")
    moment = now()
    with uow:
        parked = uow.connect_confirmations.consume(session_id, state_digest(presented), moment)
        if parked is None:
            raise NotFound(f"no connect session {session_id} is waiting for this confirmation")
        saved = store_grant(uow, parked, parked.grant, parked.metadata, moment)
        provider = uow.providers.get(parked.provider_id)
        integration = uow.integrations.find(parked.provider_id)
        uow.commit()
    metrics.add_metric(name=MetricName.CONNECT_CONFIRMED, unit="Count", value=1)
    retire_replaced_grant(oauth or wiring.get_oauth_client(), provider, integration, saved)
    return saved.connection


def revoke_unconfirmed(
    *, oauth: OAuthClient | None = None, sealer: Sealer | None = None, now: Clock = utcnow
) -> SweepReport:
    """Revoke at the provider, and drop, every parked grant whose session expired unconfirmed."""
    moment = now()
    with UnitOfWork(None, sealer=sealer) as uow:
        expired = uow.connect_confirmations.list_expired(moment, SWEEP_BATCH)
    revoked = dropped = 0
    for session_id, tenant_id in expired:
        with UnitOfWork(tenant_id, sealer=sealer) as uow:
            parked = uow.connect_confirmations.take_expired(session_id, moment)
            if parked is None:  # confirmed or swept meanwhile
                continue
            provider = uow.providers.get(parked.provider_id)
            integration = uow.integrations.find(parked.provider_id)
            uow.commit()
        if _revoke(parked, provider, integration, oauth or wiring.get_oauth_client()):
            revoked += 1
        else:
            dropped += 1
            logger.info(
                "unconfirmed grant dropped unrevoked",
                extra={"tenant_id": str(tenant_id), "connect_session_id": str(session_id)},
            )
    if revoked or dropped:
        metrics.add_metric(name=MetricName.CONNECT_UNCONFIRMED_REVOKED, unit="Count", value=revoked + dropped)
    return SweepReport(revoked, dropped)


def _revoke(parked: ParkedGrant, provider: Provider, integration: Integration | None, oauth: OAuthClient) -> bool:
    provider = connection_config.for_revocation(provider, parked.grant.connection_config or {})
    if provider.revocation_url is None or integration is None:
        return False
    token, hint = parked.credentials.revocation_target()
    return oauth.revoke(provider, integration.client, token.reveal(), hint)
