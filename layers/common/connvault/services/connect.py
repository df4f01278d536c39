"""The OAuth connect flow: start a connect session, then complete it at the callback.

The state is 256 random bits, stored only as its SHA-256 and consumed with ``DELETE … RETURNING``, so it
works once; PKCE S256 is used whenever the provider accepts it. Nothing is written for a connection until
the provider has handed over tokens, and then in one transaction, so a failed callback leaves nothing behind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from connvault import connection_config, wiring
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.db.connections import NewCredentials
from connvault.db.tenants import Resource
from connvault.db.uow import UnitOfWork
from connvault.errors import (
    DatabaseUnavailable,
    InvalidInput,
    NotFound,
    ProviderRejected,
    ProviderUnavailable,
    QuotaExceeded,
    ReauthRequired,
)
from connvault.models import AuthType, OAuth2Credentials, PendingConnect
from connvault.oauth.outcomes import sanitize_reason
from connvault.oauth.pkce import code_challenge_s256, new_code_verifier, new_state, state_digest
from connvault.observability import MetricName, logger, metrics
from connvault.redacted import Redacted
from connvault.retry import retry
from connvault.services import custom_providers, quotas
from connvault.services.revocation import retire_replaced_grant
from connvault.validation import is_listed, require_return_url, require_scopes, require_text

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from connvault.crypto.sealer import Sealer
    from connvault.db.connect_confirmations import ParkedGrant
    from connvault.db.connections import SavedGrant
    from connvault.models import ClientCredentials, ConnectionKind, DeviceSession, Integration, Provider
    from connvault.oauth.client import OAuthClient

MAX_STATE_LENGTH = 512
MAX_CODE_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    provider: str
    end_user_id: str
    alias: str = ""
    return_url: str | None = None
    scopes: tuple[str, ...] | None = None
    require_confirmation: bool = False
    connect_link_id: UUID | None = None
    """The connect link whose page starts this attempt (see services/connect_links.py)."""
    connection_config: Mapping[str, object] | None = None
    """Values for the provider's URL placeholders (``{"subdomain": "acme"}``), as the tenant sent them."""


@dataclass(frozen=True, slots=True)
class ConnectSession:
    """``authorize_url`` carries the state: it is handed to the tenant once and never logged."""

    id: UUID
    authorize_url: Redacted[str]
    expires_at: datetime
    require_confirmation: bool = False


@dataclass(frozen=True, slots=True)
class CallbackParams:
    """The callback's query, as the provider sent it. ``code`` and ``state`` are secrets."""

    state: Redacted[str] | None
    code: Redacted[str] | None
    error: str | None = None
    iss: str | None = None


@dataclass(frozen=True, slots=True)
class ParkedConfirmation:
    """A grant waiting for the tenant's confirmation: the session to confirm and its one-time code, which travel
    to the tenant's return URL through the end user's browser (like an authorization code, used once)."""

    session_id: UUID
    code: Redacted[str]

    def query(self) -> dict[str, str]:
        return {"connect_session_id": str(self.session_id), "confirmation": self.code.reveal()}


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """Where the end user goes next: the tenant's return URL with ``connection_id`` or ``error``, or a page."""

    return_url: str | None
    connection_id: UUID | None = None
    error: str | None = None
    tenant_id: UUID | None = None
    confirmation: ParkedConfirmation | None = None
    connect_link_id: UUID | None = None
    """Set when the connect page started the attempt: the page, not a bare redirect, shows the result."""

    @property
    def redirect_url(self) -> str | None:
        if self.return_url is None:
            return None
        if self.confirmation is not None:
            extra = self.confirmation.query()
        elif self.connection_id:
            extra = {"connection_id": str(self.connection_id)}
        else:
            extra = {"error": self.error or ""}
        parts = urlsplit(self.return_url)
        query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
        return urlunsplit(parts._replace(query=urlencode(query)))


def create_connect_session(
    uow: UnitOfWork,
    request: ConnectRequest,
    *,
    callback_url: str,
    oauth: OAuthClient | None = None,
    now: Clock = utcnow,
) -> ConnectSession:
    """Start connecting an end user's account. Raises InvalidInput for anything the tenant must fix first."""
    end_user_id = require_text(request.end_user_id, "end_user_id", max_length=255)
    alias = require_text(request.alias, "alias", max_length=100, min_length=0)
    requested_scopes = None if request.scopes is None else require_scopes(request.scopes)
    if request.require_confirmation and request.return_url is None:
        raise InvalidInput("a session that requires confirmation needs a return_url", field="return_url")
    started = now()
    expires_at = started + timedelta(seconds=get_settings().connect_session_ttl_seconds)
    state = new_state()
    custom_providers.refresh_stale_metadata(uow, request.provider, now=now)
    with uow:
        provider = _oauth_provider(uow, request.provider)
        config = connection_config.tenant_config(provider, request.connection_config)
        integration = uow.integrations.find(provider.id)
        if integration is None:
            raise InvalidInput(f"configure the integration for {provider.slug!r} first", field="provider")
        return_url = None if request.return_url is None else require_return_url(request.return_url, "return_url")
        if return_url is not None and not _registered_return_url(uow, integration, return_url):
            raise InvalidInput(
                "return_url is in neither the integration's nor the connect settings' allowed_return_urls",
                field="return_url",
            )
        scopes = requested_scopes if requested_scopes is not None else (integration.scopes or provider.default_scopes)
        verifier = new_code_verifier() if provider.pkce else None
        pending = PendingConnect(
            id=uuid.uuid4(),
            tenant_id=uow.tenant,
            provider_id=provider.id,
            end_user_id=end_user_id,
            alias=alias,
            scopes=tuple(scopes),
            code_verifier=Redacted(verifier) if verifier else None,
            return_url=return_url,
            expires_at=expires_at,
            require_confirmation=request.require_confirmation,
            connect_link_id=request.connect_link_id,
            connection_config=config,
        )
        # Abandoned attempts (the end user never came back) hold a sealed verifier; they go with the next start
        # (and with the scheduled housekeeping, for tenants that start none).
        uow.oauth_sessions.purge_expired(uow.tenant, started)
        if request.connect_link_id is not None:
            # A page holds one attempt at a time: choosing again replaces the last (the link's row lock orders
            # two tabs), so clicks on one link cannot fill the tenant's quota of connect sessions.
            uow.connect_links.get(request.connect_link_id, for_update=True)
            uow.oauth_sessions.delete_for_link(request.connect_link_id)
        quotas.require_room(uow, Resource.CONNECT_SESSIONS, now=now)
        uow.oauth_sessions.add(pending, state_digest(state))
        uow.commit()
    url = (oauth or wiring.get_oauth_client()).authorize_url(
        connection_config.configured(provider, config),
        integration.client_id,
        callback_url,
        scopes,
        state,
        code_challenge_s256(verifier) if verifier else None,
    )
    return ConnectSession(pending.id, Redacted(url), expires_at, request.require_confirmation)


def complete_connect(
    params: CallbackParams,
    *,
    callback_url: str,
    oauth: OAuthClient | None = None,
    sealer: Sealer | None = None,
    now: Clock = utcnow,
) -> CallbackResult:
    """Finish a connect at the provider's redirect. Never raises for anything the browser or provider sent:
    every failure becomes a ``CallbackResult`` with an error code, and nothing is written for it."""
    state = params.state.reveal() if params.state else ""
    if not state or len(state) > MAX_STATE_LENGTH:
        return CallbackResult(None, error="invalid_state")
    digest = state_digest(state)
    with UnitOfWork(None, sealer=sealer) as uow:
        tenant_id = uow.oauth_sessions.tenant_of_state(digest)
    if tenant_id is None:
        return CallbackResult(None, error="invalid_state")
    with UnitOfWork(tenant_id, sealer=sealer) as uow:
        pending = uow.oauth_sessions.consume(digest)
        uow.commit()
        if pending is None:  # another callback with the same state won the race
            return CallbackResult(None, error="invalid_state", tenant_id=tenant_id)
        catalog_provider = uow.providers.get(pending.provider_id)
        integration = uow.integrations.find(catalog_provider.id)

    def fail(code: str) -> CallbackResult:
        return CallbackResult(
            pending.return_url, error=code, tenant_id=tenant_id, connect_link_id=pending.connect_link_id
        )

    if pending.expires_at <= now():
        return fail("expired_state")
    try:
        # The endpoints (and issuer) of this connection: a shop's own host, checked when the session started.
        provider = connection_config.configured(catalog_provider, pending.connection_config)
    except (InvalidInput, connection_config.TemplateError):
        return fail("invalid_connection_config")
    if not _issuer_ok(provider, params.iss):  # error answers too (RFC 9207 §2.4): a mix-up can forge one
        return fail("issuer_mismatch")
    if params.error:
        return fail(sanitize_reason(params.error))
    code = params.code.reveal() if params.code else ""
    if not code or len(code) > MAX_CODE_LENGTH:
        return fail("invalid_request")
    if integration is None:
        return fail("integration_missing")
    client = oauth or wiring.get_oauth_client()
    try:
        tokens = client.exchange_code(
            provider,
            integration.client,
            code,
            callback_url,
            pending.code_verifier.reveal() if pending.code_verifier else None,
            now(),
        )
    except (ReauthRequired, ProviderRejected) as exc:
        return fail(exc.reason or exc.code)
    except ProviderUnavailable:
        return fail("provider_unavailable")
    credentials = OAuth2Credentials(tokens.access_token, tokens.refresh_token, tokens.id_token)
    try:
        # A grant with no usable API host (Salesforce without instance_url) is InvalidInput: not kept.
        grant = replace(
            NewCredentials.answered(credentials, tokens, pending.scopes),
            connection_config={
                **pending.connection_config,
                **connection_config.token_response_config(provider, tokens.extra),
            },
        )
        metadata = {"provider": dict(tokens.extra)} if tokens.extra else {}
        if pending.require_confirmation:
            parked = park_grant(pending, grant, metadata, sealer=sealer)
            return CallbackResult(pending.return_url, tenant_id=tenant_id, confirmation=parked)
        saved = _save_grant(pending, grant, metadata, sealer=sealer, now=now)
    except Exception as exc:  # whatever failed, the provider's grant must not outlive it
        revoke_orphaned_grant(client, provider, integration.client, credentials, exc)
        if isinstance(exc, InvalidInput):
            return fail("invalid_token_response")
        if isinstance(exc, _LinkUsed):
            return fail("link_used")
        return fail(exc.code if isinstance(exc, QuotaExceeded) else "server_error")
    retire_replaced_grant(oauth or wiring.get_oauth_client(), catalog_provider, integration, saved)
    return CallbackResult(
        pending.return_url,
        connection_id=saved.connection.id,
        tenant_id=tenant_id,
        connect_link_id=pending.connect_link_id,
    )


class _LinkUsed(Exception):
    """The connect link this flow started from was finished meanwhile (another provider, another tab)."""


def revoke_orphaned_grant(
    oauth: OAuthClient | None,
    provider: Provider,
    client: ClientCredentials,
    credentials: OAuth2Credentials,
    error: Exception,
) -> None:
    """The provider granted access but nothing was stored to point at it: take the grant back (best effort) so
    no live grant is left that connvault cannot see, refresh or delete. Logged with the error's type only."""
    token, hint = credentials.revocation_target()
    revoked = (oauth or wiring.get_oauth_client()).revoke(provider, client, token.reveal(), hint)
    if not revoked:
        metrics.add_metric(name=MetricName.REVOCATION_FAILED, unit="Count", value=1)
    logger.error(
        "connect failed after the code exchange; the new grant was revoked"
        if revoked
        else "connect failed after the code exchange; the new grant could not be revoked",
        extra={"provider": provider.slug, "error_type": type(error).__name__, "revoked": revoked},
    )


def _save_grant(
    pending: PendingConnect, grant: NewCredentials, metadata: dict[str, Any], *, sealer: Sealer | None, now: Clock
) -> SavedGrant:
    """Store the grant; one retry on a database error, since the code that produced it cannot be used again."""

    def save() -> SavedGrant:
        with UnitOfWork(pending.tenant_id, sealer=sealer) as uow:
            saved = store_grant(uow, pending, grant, metadata, now())
            # A link is used once: a flow started from its page before another one finished it (another
            # provider, another tab) stores nothing. Recorded in the same transaction, so of two callbacks of
            # one link only the first commits.
            if pending.connect_link_id is not None and not uow.connect_links.complete(
                pending.connect_link_id, saved.connection.id, now()
            ):
                raise _LinkUsed
            uow.commit()
        return saved

    return retry(save, attempts=2, on=(DatabaseUnavailable,))


def park_grant(
    pending: PendingConnect, grant: NewCredentials, metadata: dict[str, Any], *, sealer: Sealer | None
) -> ParkedConfirmation:
    """Hold a grant, sealed, until the tenant confirms it; only the code's hash is kept."""
    code = new_state()
    with UnitOfWork(pending.tenant_id, sealer=sealer) as uow:
        uow.connect_confirmations.park(pending, grant, metadata, state_digest(code))
        uow.commit()
    return ParkedConfirmation(pending.id, Redacted(code))


def store_grant(
    uow: UnitOfWork,
    owner: PendingConnect | ParkedGrant | DeviceSession,
    grant: NewCredentials,
    metadata: dict[str, Any],
    granted_at: datetime,
    *,
    kind: ConnectionKind | None = None,
) -> SavedGrant:
    """The connection for a grant: new (within the tenant's quota), or the end user's existing one with its tokens
    replaced; the caller retires the replaced grant once this committed (``services/revocation.py``). ``kind``
    None is the connect flow's authorization code."""
    quotas.require_room_for_connection(uow, owner.provider_id, owner.end_user_id, owner.alias, now=lambda: granted_at)
    return uow.connections.save_grant(
        owner.tenant_id,
        owner.provider_id,
        end_user_id=owner.end_user_id,
        alias=owner.alias,
        grant=grant,
        granted_at=granted_at,
        metadata=metadata,
        kind=kind,
    )


def _registered_return_url(uow: UnitOfWork, integration: Integration, return_url: str) -> bool:
    """Whether the tenant registered ``return_url``: for this integration, or for its connect links and sessions in
    the connect settings. Both lists are the tenant's own; a session for one provider accepts what a link for the
    same provider would."""
    return is_listed(return_url, integration.allowed_return_urls) or is_listed(
        return_url, uow.connect_settings.get(uow.tenant).allowed_return_urls
    )


def _oauth_provider(uow: UnitOfWork, slug: str) -> Provider:
    try:
        provider = uow.providers.get_by_slug(slug)
    except NotFound:
        raise InvalidInput("unknown provider", field="provider") from None
    if provider.auth_type is not AuthType.OAUTH2:
        raise InvalidInput(f"provider {slug!r} does not use OAuth", field="provider")
    return provider


def _issuer_ok(provider: Provider, iss: str | None) -> bool:
    """RFC 9207: a declared issuer must match when ``iss`` is sent, and ``iss`` is required when the provider
    says it always sends it. A mismatch is a mix-up attack: the code was meant for another server."""
    if iss is None:
        return not provider.require_iss
    return provider.issuer is None or iss == provider.issuer
