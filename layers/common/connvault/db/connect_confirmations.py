"""Grants parked by the callback of a connect session that requires confirmation. The grant is sealed like a
connection's credentials; the confirmation code is known only by its SHA-256; each row is consumed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from connvault.crypto.envelope import SealContext
from connvault.db.connections import NewCredentials
from connvault.db.rows import ConnectConfirmationRow
from connvault.models import OAuth2Credentials, credentials_from_bytes, credentials_to_bytes

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer
    from connvault.models import PendingConnect

GRANT_FIELD = "connect_confirmations.credentials"
ACCOUNT_ID_FIELD = "connect_confirmations.provider_account_id"


@dataclass(frozen=True, slots=True)
class ParkedGrant:
    id: UUID
    tenant_id: UUID
    provider_id: UUID
    end_user_id: str
    alias: str
    grant: NewCredentials
    metadata: dict[str, Any]
    confirm_by: datetime

    @property
    def credentials(self) -> OAuth2Credentials:
        assert isinstance(self.grant.credentials, OAuth2Credentials)
        return self.grant.credentials


class ConnectConfirmationRepository:
    def __init__(self, session: Session, sealer: Sealer) -> None:
        self._session = session
        self._sealer = sealer

    def park(
        self, pending: PendingConnect, grant: NewCredentials, metadata: dict[str, Any], confirmation_sha256: bytes
    ) -> None:
        context = SealContext(pending.tenant_id, GRANT_FIELD, pending.id)
        account_id = grant.provider_account_id
        self._session.add(
            ConnectConfirmationRow(
                id=pending.id,
                tenant_id=pending.tenant_id,
                provider_id=pending.provider_id,
                end_user_id=pending.end_user_id,
                alias=pending.alias,
                confirmation_sha256=confirmation_sha256,
                credentials=self._sealer.seal(credentials_to_bytes(grant.credentials), context),
                token_type=grant.token_type,
                scopes=list(grant.scopes),
                token_expires_at=grant.expires_at,
                metadata_=metadata,
                confirm_by=pending.expires_at,
                connection_config=dict(grant.connection_config or {}),
                provider_account_id=self._sealer.seal_text(
                    account_id, SealContext(pending.tenant_id, ACCOUNT_ID_FIELD, pending.id)
                ),
            )
        )
        self._session.flush()

    def consume(self, session_id: UUID, confirmation_sha256: bytes, now: datetime) -> ParkedGrant | None:
        """The parked grant, deleted, if the code matches and the session has not expired: once only, even when
        two confirmations race."""
        row = self._session.scalars(
            delete(ConnectConfirmationRow)
            .where(
                ConnectConfirmationRow.id == session_id,
                ConnectConfirmationRow.confirmation_sha256 == confirmation_sha256,
                ConnectConfirmationRow.confirm_by > now,
            )
            .returning(ConnectConfirmationRow)
        ).one_or_none()
        return None if row is None else self._to_domain(row)

    def take_expired(self, session_id: UUID, now: datetime) -> ParkedGrant | None:
        """An unconfirmed grant past its session's expiry, deleted (the caller revokes it at the provider)."""
        return self._take(ConnectConfirmationRow.id == session_id, ConnectConfirmationRow.confirm_by <= now)

    def take(self, tenant_id: UUID, session_id: UUID) -> ParkedGrant | None:
        """The tenant's parked grant, deleted whether or not its session expired (the caller revokes it at the
        provider): the tenant is being deleted, and its cascade would drop the row out of the sweep's reach."""
        return self._take(ConnectConfirmationRow.id == session_id, ConnectConfirmationRow.tenant_id == tenant_id)

    def count(self, tenant_id: UUID) -> int:
        """How many grants the tenant has parked (filtered by tenant as well as RLS)."""
        query = select(func.count()).select_from(ConnectConfirmationRow)
        return self._session.scalar(query.where(ConnectConfirmationRow.tenant_id == tenant_id)) or 0

    def list_ids(self, tenant_id: UUID, limit: int) -> list[UUID]:
        """Ids of the tenant's parked grants, expired or not, oldest first (filtered by tenant as well as RLS)."""
        query = (
            select(ConnectConfirmationRow.id)
            .where(ConnectConfirmationRow.tenant_id == tenant_id)
            .order_by(ConnectConfirmationRow.created_at, ConnectConfirmationRow.id)
            .limit(limit)
        )
        return list(self._session.scalars(query))

    def _take(self, *conditions: ColumnElement[bool]) -> ParkedGrant | None:
        """The one row matching ``conditions``, deleted and returned: a row a confirmation consumed meanwhile is
        None, never revoked under the connection it became."""
        row = self._session.scalars(
            delete(ConnectConfirmationRow).where(*conditions).returning(ConnectConfirmationRow)
        ).one_or_none()
        return None if row is None else self._to_domain(row)

    def drop_for_provider(self, provider_id: UUID) -> None:
        """Delete the provider's parked grants unrevoked (its endpoints moved away from the server that issued
        them: ``connection_status.issuer_left``); their end users connect again."""
        self._session.execute(delete(ConnectConfirmationRow).where(ConnectConfirmationRow.provider_id == provider_id))

    def list_expired(self, now: datetime, limit: int) -> list[tuple[UUID, UUID]]:
        """(session id, tenant id) of expired parked grants of every tenant (a SECURITY DEFINER lookup)."""
        found = func.connvault_unconfirmed_grants(now, limit).table_valued("id", "tenant_id")
        return [(row.id, row.tenant_id) for row in self._session.execute(select(found.c.id, found.c.tenant_id))]

    def _to_domain(self, row: ConnectConfirmationRow) -> ParkedGrant:
        plaintext = self._sealer.open(row.credentials, SealContext(row.tenant_id, GRANT_FIELD, row.id))
        account_id = self._sealer.open_text(
            row.provider_account_id, SealContext(row.tenant_id, ACCOUNT_ID_FIELD, row.id)
        )
        return ParkedGrant(
            id=row.id,
            tenant_id=row.tenant_id,
            provider_id=row.provider_id,
            end_user_id=row.end_user_id,
            alias=row.alias,
            grant=NewCredentials(
                credentials_from_bytes(plaintext),
                token_type=row.token_type,
                scopes=tuple(row.scopes),
                expires_at=row.token_expires_at,
                connection_config=dict(row.connection_config),
                provider_account_id=account_id,
            ),
            metadata=dict(row.metadata_),
            confirm_by=row.confirm_by,
        )
