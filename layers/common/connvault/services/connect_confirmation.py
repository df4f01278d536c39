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
    from datetime import datetime
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
    client = oauth or wiring.get_oauth_client()
    outcomes = [
        _take_and_revoke(UnitOfWork(tenant_id, sealer=sealer), session_id, client, expired_by=moment)
        for session_id, tenant_id in expired
    ]
    return _reported(outcomes)


def revoke_parked(uow: UnitOfWork, *, oauth: OAuthClient | None = None) -> SweepReport:
    """Revoke at the provider, and drop, every grant the unit of work's tenant has parked, expired or not, as the
    sweep does for expired ones. For deleting the tenant: its ``ON DELETE CASCADE`` would drop these rows unrevoked
    and out of the sweep's reach, leaving refresh tokens live at the provider that nothing points at. A provider
    that does not answer or refuses costs the grant its revocation (counted ``dropped``), never the deletion."""
    client = oauth or wiring.get_oauth_client()
    outcomes: list[bool | None] = []
    with uow:
        due = uow.connect_confirmations.count(uow.tenant)
    # As many as were parked when it began: a tenant parking grants as fast as they are revoked does not keep it
    # going (the deletion's next round, or its cascade, meets the rest).
    while due > 0:
        with uow:
            ids = uow.connect_confirmations.list_ids(uow.tenant, min(SWEEP_BATCH, due))
        if not ids:
            break
        # Each id is gone once taken (or consumed meanwhile), so the next page holds only rows not seen yet.
        outcomes.extend(_take_and_revoke(uow, session_id, client, expired_by=None) for session_id in ids)
        due -= len(ids)
    return _reported(outcomes)


def _take_and_revoke(
    uow: UnitOfWork, session_id: UUID, oauth: OAuthClient, *, expired_by: datetime | None
) -> bool | None:
    """Delete one parked grant of the unit of work's tenant (only if its session expired by ``expired_by``, when
    given) and then revoke it: True revoked, False dropped unrevoked, None when a confirmation or another sweep took
    it first. Deleted first, in a transaction of its own, so that a confirmation racing this cannot make a
    connection of a grant being revoked, and no transaction stays open across the provider call."""
    with uow:
        repository = uow.connect_confirmations
        parked = (
            repository.take(uow.tenant, session_id)
            if expired_by is None
            else repository.take_expired(session_id, expired_by)
        )
        if parked is None:
            return None
        provider = uow.providers.get(parked.provider_id)
        integration = uow.integrations.find(parked.provider_id)
        uow.commit()
    if _revoke(parked, provider, integration, oauth):
        return True
    logger.info(
        "unconfirmed grant dropped unrevoked",
        extra={"tenant_id": str(parked.tenant_id), "connect_session_id": str(parked.id)},
    )
    return False


def _reported(outcomes: list[bool | None]) -> SweepReport:
    revoked, dropped = outcomes.count(True), outcomes.count(False)
    if revoked or dropped:
        metrics.add_metric(name=MetricName.CONNECT_UNCONFIRMED_REVOKED, unit="Count", value=revoked + dropped)
    return SweepReport(revoked, dropped)


def _revoke(parked: ParkedGrant, provider: Provider, integration: Integration | None, oauth: OAuthClient) -> bool:
    provider = connection_config.for_revocation(provider, parked.grant.connection_config or {})
    if provider.revocation_url is None or integration is None:
        return False
    token, hint = parked.credentials.revocation_target()
    return oauth.revoke(provider, integration.client, token.reveal(), hint)
