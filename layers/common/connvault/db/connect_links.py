"""Connect links: connect sessions finished on the hosted page. Tokens are known only by their SHA-256."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import delete, func, select, update

from connvault.db.rowcount import rows_changed
from connvault.db.rows import ConnectLinkRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class ConnectLink:
    """What a link lets its end user do: connect one of ``provider_ids`` for ``end_user_id``, once."""

    id: UUID
    tenant_id: UUID
    provider_ids: tuple[UUID, ...]
    end_user_id: str
    alias: str
    scopes: tuple[str, ...] | None
    return_url: str | None
    expires_at: datetime
    opened_at: datetime | None = None
    completed_at: datetime | None = None
    connection_id: UUID | None = None
    connection_config: Mapping[str, str] = field(default_factory=dict)
    """The tenant's values for the URL placeholders of the link's one provider, when it needs them."""

    def is_live(self, now: datetime) -> bool:
        return self.completed_at is None and self.expires_at > now


class ConnectLinkRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, link: ConnectLink, link_sha256: bytes) -> None:
        self._session.add(
            ConnectLinkRow(
                id=link.id,
                tenant_id=link.tenant_id,
                link_sha256=link_sha256,
                provider_ids=list(link.provider_ids),
                end_user_id=link.end_user_id,
                alias=link.alias,
                scopes=None if link.scopes is None else list(link.scopes),
                return_url=link.return_url,
                expires_at=link.expires_at,
                connection_config=dict(link.connection_config),
            )
        )
        self._session.flush()

    def tenant_of_token(self, token_sha256: bytes) -> UUID | None:
        """Which tenant a link or page token belongs to, asked before any tenant is known (SECURITY DEFINER)."""
        return self._session.scalar(select(func.connvault_connect_link_tenant(token_sha256)))

    def open(self, link_sha256: bytes, page_sha256: bytes, now: datetime, window: timedelta) -> ConnectLink | None:
        """Use up the link token: of two requests racing on it, exactly one gets the link and its page token.

        Opening starts the page's own window, so an end user who opens the link late still has the whole of it.
        """
        row = self._session.scalars(
            update(ConnectLinkRow)
            .where(
                ConnectLinkRow.link_sha256 == link_sha256,
                ConnectLinkRow.opened_at.is_(None),
                ConnectLinkRow.expires_at > now,
            )
            .values(opened_at=now, page_sha256=page_sha256, expires_at=now + window)
            .returning(ConnectLinkRow)
        ).one_or_none()
        return None if row is None else _to_domain(row)

    def find_by_link(self, link_sha256: bytes) -> tuple[ConnectLink, bytes | None] | None:
        """The link and its current page token hash, whatever its state (to explain why it no longer works)."""
        row = self._session.scalars(select(ConnectLinkRow).where(ConnectLinkRow.link_sha256 == link_sha256)).first()
        return None if row is None else (_to_domain(row), row.page_sha256)

    def find_by_page(self, page_sha256: bytes, *, for_update: bool = False) -> ConnectLink | None:
        query = select(ConnectLinkRow).where(ConnectLinkRow.page_sha256 == page_sha256)
        row = self._session.scalars(query.with_for_update() if for_update else query).first()
        return None if row is None else _to_domain(row)

    def get(self, link_id: UUID, *, for_update: bool = False) -> ConnectLink | None:
        query = select(ConnectLinkRow).where(ConnectLinkRow.id == link_id)
        row = self._session.scalars(query.with_for_update() if for_update else query).first()
        return None if row is None else _to_domain(row)

    def replace_page_token(self, link_id: UUID, page_sha256: bytes) -> bool:
        """A new page token for a live link (after a failed OAuth attempt); the old one stops working."""
        changed = rows_changed(
            self._session,
            update(ConnectLinkRow)
            .where(ConnectLinkRow.id == link_id, ConnectLinkRow.completed_at.is_(None))
            .values(page_sha256=page_sha256),
        )
        return changed > 0

    def reserve_credential_check(self, link_id: UUID, limit: int) -> bool:
        """Count one more credential check for the link's page, unless it made ``limit`` already: of requests
        racing on one page, no more than ``limit`` in all get a check."""
        changed = rows_changed(
            self._session,
            update(ConnectLinkRow)
            .where(ConnectLinkRow.id == link_id, ConnectLinkRow.credential_checks < limit)
            .values(credential_checks=ConnectLinkRow.credential_checks + 1),
        )
        return changed > 0

    def complete(self, link_id: UUID, connection_id: UUID, now: datetime) -> bool:
        """Record the connection the link made; its page token dies with it. False if it had made one already."""
        changed = rows_changed(
            self._session,
            update(ConnectLinkRow)
            .where(ConnectLinkRow.id == link_id, ConnectLinkRow.completed_at.is_(None))
            .values(completed_at=now, connection_id=connection_id, page_sha256=None),
        )
        return changed > 0

    def purge_expired(self, now: datetime) -> int:
        changed = rows_changed(self._session, delete(ConnectLinkRow).where(ConnectLinkRow.expires_at < now))
        return changed


def _to_domain(row: ConnectLinkRow) -> ConnectLink:
    return ConnectLink(
        id=row.id,
        tenant_id=row.tenant_id,
        provider_ids=tuple(row.provider_ids),
        end_user_id=row.end_user_id,
        alias=row.alias,
        scopes=None if row.scopes is None else tuple(row.scopes),
        return_url=row.return_url,
        expires_at=row.expires_at,
        opened_at=row.opened_at,
        completed_at=row.completed_at,
        connection_id=row.connection_id,
        connection_config=dict(row.connection_config),
    )
