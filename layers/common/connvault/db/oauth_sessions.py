"""Pending connect attempts. The state is known only by its SHA-256; the PKCE verifier is sealed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from connvault.crypto.envelope import SealContext
from connvault.db.rowcount import rows_changed
from connvault.db.rows import OAuthSessionRow
from connvault.models import PendingConnect

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer

VERIFIER_FIELD = "oauth_sessions.code_verifier"


class OAuthSessionRepository:
    def __init__(self, session: Session, sealer: Sealer) -> None:
        self._session = session
        self._sealer = sealer

    def add(self, pending: PendingConnect, state_sha256: bytes) -> None:
        verifier = self._sealer.seal_text(
            pending.code_verifier, SealContext(pending.tenant_id, VERIFIER_FIELD, pending.id)
        )
        self._session.add(
            OAuthSessionRow(
                id=pending.id,
                tenant_id=pending.tenant_id,
                provider_id=pending.provider_id,
                state_sha256=state_sha256,
                end_user_id=pending.end_user_id,
                alias=pending.alias,
                scopes=list(pending.scopes),
                code_verifier=verifier,
                return_url=pending.return_url,
                expires_at=pending.expires_at,
                require_confirmation=pending.require_confirmation,
                connect_link_id=pending.connect_link_id,
                connection_config=dict(pending.connection_config),
            )
        )
        self._session.flush()

    def tenant_of_state(self, state_sha256: bytes) -> UUID | None:
        """Which tenant a state belongs to, asked before any tenant is known (SECURITY DEFINER lookup)."""
        return self._session.scalar(
            select(func.connvault_oauth_session_tenant(state_sha256).table_valued("id", "tenant_id").c.tenant_id)
        )

    def consume(self, state_sha256: bytes) -> PendingConnect | None:
        """Delete and return the session: of two callbacks racing on one state, exactly one gets it."""
        row = self._session.scalars(
            delete(OAuthSessionRow).where(OAuthSessionRow.state_sha256 == state_sha256).returning(OAuthSessionRow)
        ).one_or_none()
        if row is None:
            return None
        verifier = self._sealer.open_text(row.code_verifier, SealContext(row.tenant_id, VERIFIER_FIELD, row.id))
        return PendingConnect(
            id=row.id,
            tenant_id=row.tenant_id,
            provider_id=row.provider_id,
            end_user_id=row.end_user_id,
            alias=row.alias,
            scopes=tuple(row.scopes),
            code_verifier=verifier,
            return_url=row.return_url,
            expires_at=row.expires_at,
            require_confirmation=row.require_confirmation,
            connect_link_id=row.connect_link_id,
            connection_config=dict(row.connection_config),
        )

    def delete_for_link(self, connect_link_id: UUID) -> int:
        """Forget the attempts a connect page started (its end user chose again): their states stop working."""
        return rows_changed(
            self._session, delete(OAuthSessionRow).where(OAuthSessionRow.connect_link_id == connect_link_id)
        )

    def purge_expired(self, tenant_id: UUID, now: datetime, *, limit: int = 100) -> int:
        """Delete up to ``limit`` of the tenant's expired sessions. Filtered by tenant as well as by RLS, so the
        statement walks this tenant's rows only (``oauth_sessions_tenant_expires_idx``), however many expired
        sessions other tenants left behind."""
        expired = (
            select(OAuthSessionRow.id)
            .where(OAuthSessionRow.tenant_id == tenant_id, OAuthSessionRow.expires_at < now)
            .limit(limit)
        )
        return rows_changed(
            self._session, delete(OAuthSessionRow).where(OAuthSessionRow.id.in_(expired.scalar_subquery()))
        )

    def purge_all_expired(self, now: datetime, *, limit: int) -> int:
        """Delete up to ``limit`` expired sessions of every tenant (a SECURITY DEFINER function: housekeeping
        runs before any tenant is known)."""
        return int(self._session.scalar(select(func.connvault_purge_expired_sessions(now, limit))) or 0)
