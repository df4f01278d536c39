"""Tenants and their API keys: create, mint, revoke, delete (which crypto-shreds the tenant's data)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connvault import api_keys, wiring
from connvault.clock import Clock, utcnow
from connvault.db.tenants import Resource
from connvault.db.uow import UnitOfWork
from connvault.errors import DatabaseBusy, InvalidInput, NotFound
from connvault.observability import logger
from connvault.services import connect_confirmation, connections, quotas
from connvault.validation import require_text

if TYPE_CHECKING:
    from connvault.crypto.sealer import Sealer
    from connvault.db.tenants import ApiKeyRecord, Tenant
    from connvault.oauth.client import OAuthClient
    from connvault.redacted import Redacted


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: ApiKeyRecord
    plaintext: Redacted[str]


def create_tenant(name: str, *, sealer: Sealer | None = None) -> Tenant:
    """A new tenant; its name is one line of text (it shows in operators' listings and terminals)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("tenant name must be 1 to 200 characters", field="name")
    require_text(name, "name", max_length=200)
    tenant_id = uuid.uuid4()
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        tenant = uow.tenants.add(tenant_id, name)
        uow.commit()
    return tenant


def create_api_key(uow: UnitOfWork) -> IssuedKey:
    """A new API key for the unit of work's tenant, within its quota; the plaintext is returned once."""
    minted = api_keys.mint()
    with uow:
        uow.tenants.get(uow.tenant)
        quotas.require_room(uow, Resource.API_KEYS)
        record = uow.tenants.add_api_key(uow.tenant, minted.key_id, minted.secret_sha256)
        uow.commit()
    return IssuedKey(record, minted.plaintext)


def revoke_api_key(uow: UnitOfWork, key_id: str, *, now: Clock = utcnow) -> ApiKeyRecord:
    with uow:
        record = uow.tenants.revoke_api_key(key_id, now())
        uow.commit()
    return record


DELETE_ROUNDS = 3
"""Rounds of revoking before the row goes whatever is left; each extra round means the tenant stored a grant (a
callback, a confirmation, an import) while the previous one was revoking."""


def delete_tenant(uow: UnitOfWork, *, oauth: OAuthClient | None = None) -> bool:
    """Delete the tenant and all it owns; False when there is no such tenant. Its key salt goes with the row, so
    copies of its envelopes (backups, logs, a stolen dump) can no longer be opened through KMS.

    Every grant the tenant holds is revoked at its provider first, by the step the product already takes for it,
    so no live grant outlives the tenant that held it: grants parked for confirmation as the sweep revokes an
    expired one (``connect_confirmation.revoke_parked``), then each connection as ``DELETE /connections/{id}``
    takes it. Parked grants go first so that one confirmed meanwhile is met again as a connection. Both are best
    effort: a provider that is down or refuses costs its grant the revocation (counted), never the deletion. The
    tenant's other secrets hold no grant at a provider (device and user codes, PKCE verifiers, its apps' client
    secrets, webhook secrets) and go with the cascade, as do connect links, which hold hashes only.

    The tenant's API keys and links work until its row goes, so grants may be stored while the walk runs. Each
    round revokes as many as the tenant held when it began; the row is then deleted under a lock that keeps any
    new row from naming the tenant, once nothing is left, or after ``DELETE_ROUNDS`` rounds whatever is left
    (counted in the log): a tenant storing grants during its own deletion cannot keep it from finishing (an
    outside probe on 2026-11-30 held an unbounded walk open by adding connections). A request storing for the
    tenant that deadlocks with the delete (``DatabaseBusy``) sends it round again.
    """
    tenant_id = uow.tenant
    rounds = 0
    while True:
        rounds += 1
        last = rounds == DELETE_ROUNDS
        _revoke_grants(uow, oauth)
        try:
            with uow:
                if not uow.tenants.lock(tenant_id):
                    return False
                left = uow.tenants.holds_connections_or_parked_grants(tenant_id)
                if left and not last:
                    continue  # stored while the walk ran: the lock goes with the transaction, and the walk runs again
                if left:
                    logger.warning(
                        "grants stored during the tenant's deletion go unrevoked", extra={"tenant_id": str(tenant_id)}
                    )
                uow.tenants.delete(tenant_id)
                uow.commit()
        except DatabaseBusy:
            if last:
                raise
            continue
        uow.sealer.data_keys.forget_tenant(tenant_id)
        wiring.get_blind_index_keys().forget_tenant(tenant_id)
        return True


def _revoke_grants(uow: UnitOfWork, oauth: OAuthClient | None) -> None:
    """Revoke and delete the tenant's parked grants, then as many of its connections as it held when this began,
    oldest first (see ``delete_tenant``)."""
    connect_confirmation.revoke_parked(uow, oauth=oauth)
    with uow:
        due = uow.tenants.usage(Resource.CONNECTIONS, utcnow())
    cursor: str | None = None
    while due > 0:
        with uow:
            page = uow.connections.list_by_tenant(cursor=cursor, limit=min(100, due))
        for connection in page.items:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                connections.delete_connection(uow, connection.id, oauth=oauth)
        due -= len(page.items)
        if (cursor := page.next_cursor) is None:
            return
