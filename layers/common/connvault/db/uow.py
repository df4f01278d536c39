"""``UnitOfWork``: one transaction, bound to one tenant, with the repositories that work inside it.

``with uow:`` opens a session, begins, and sets ``app.tenant_id`` with ``set_config(..., true)`` (the
bind-parameter form of ``SET LOCAL``) at the start of every transaction, so row-level security confines
every statement to the tenant.
Leaving the block rolls back whatever was not committed: a commit is always explicit. A unit of work can be
entered again after it exits, which is how a service runs several short transactions around a provider call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import event, text

from connvault.db import sealing
from connvault.db.accounts import AccountRepository
from connvault.db.blind_index import BlindIndexer
from connvault.db.connect_confirmations import ConnectConfirmationRepository
from connvault.db.connect_links import ConnectLinkRepository
from connvault.db.connect_settings import ConnectSettingsRepository
from connvault.db.connections import ConnectionRepository
from connvault.db.device_sessions import DeviceSessionRepository
from connvault.db.engine import get_session_factory
from connvault.db.envelope_columns import EnvelopeColumnRepository
from connvault.db.integrations import IntegrationRepository
from connvault.db.oauth_sessions import OAuthSessionRepository
from connvault.db.providers import ProviderRepository
from connvault.db.tenants import TenantRepository
from connvault.db.webhooks import WebhookRepository

if TYPE_CHECKING:
    from types import TracebackType
    from uuid import UUID

    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, sessionmaker

    from connvault.crypto.sealer import Sealer


_SET_TENANT = text("SELECT set_config('app.tenant_id', :t, true)")


class UnitOfWork:
    connect_confirmations: ConnectConfirmationRepository
    accounts: AccountRepository
    connect_links: ConnectLinkRepository
    connect_settings: ConnectSettingsRepository
    connections: ConnectionRepository
    device_sessions: DeviceSessionRepository
    envelope_columns: EnvelopeColumnRepository
    integrations: IntegrationRepository
    oauth_sessions: OAuthSessionRepository
    providers: ProviderRepository
    tenants: TenantRepository
    webhooks: WebhookRepository

    def __init__(
        self,
        tenant_id: UUID | None,
        *,
        sealer: Sealer | None = None,
        session_factory: sessionmaker[Session] | None = None,
    ) -> None:
        """``tenant_id=None`` is for the few cross-tenant lookups done through SECURITY DEFINER functions;
        such a unit of work sees no tenant rows at all."""
        self.tenant_id = tenant_id
        self._sealer = sealer
        self._session_factory = session_factory
        self._session: Session | None = None

    @property
    def tenant(self) -> UUID:
        """The tenant this unit of work is bound to (a programming error to ask a tenantless one)."""
        if self.tenant_id is None:
            raise RuntimeError("this UnitOfWork is not bound to a tenant")
        return self.tenant_id

    @property
    def sealer(self) -> Sealer:
        """The sealer this unit of work's repositories seal and open with (usable outside the with-block)."""
        return self._sealer or sealing.get_sealer()

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("UnitOfWork used outside its with-block")
        return self._session

    def __enter__(self) -> Self:
        factory = self._session_factory or get_session_factory()
        sealer = self.sealer
        session = factory()
        if self.tenant_id is not None:
            # Every transaction of this session, including those after a commit, is bound to the tenant.
            tenant = str(self.tenant_id)

            @event.listens_for(session, "after_begin")
            def _bind_tenant(_session: Session, _transaction: Any, connection: Connection) -> None:
                connection.execute(_SET_TENANT, {"t": tenant})

        session.begin()
        self._session = session
        self.connect_confirmations = ConnectConfirmationRepository(session, sealer)
        self.connect_links = ConnectLinkRepository(session)
        self.connect_settings = ConnectSettingsRepository(session)
        index = (
            None
            if self.tenant_id is None
            else BlindIndexer(session, self.tenant_id, sealer, sealing.get_blind_index_keys())
        )
        self.accounts = AccountRepository(session, sealer, index)
        self.connections = ConnectionRepository(session, sealer, index)
        self.device_sessions = DeviceSessionRepository(session, sealer)
        self.envelope_columns = EnvelopeColumnRepository(session)
        self.integrations = IntegrationRepository(session, sealer)
        self.oauth_sessions = OAuthSessionRepository(session, sealer)
        self.providers = ProviderRepository(session)
        self.tenants = TenantRepository(session)
        self.webhooks = WebhookRepository(session, sealer)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self.session, None
        try:
            session.rollback()
        finally:
            session.close()

    def commit(self) -> None:
        self.session.commit()
