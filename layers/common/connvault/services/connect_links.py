"""The hosted connect page: a connect session the end user finishes on a page connvault serves.

A tenant creates a link (``create_link``) naming the providers its end user may connect. The link's token works
once: opening it (``open_link``) uses it up and hands the page a page token, which the page's forms carry (never
a URL) until the link makes its connection or expires. Both tokens are 256 random bits stored only as SHA-256,
like the OAuth state. The same browser may reopen the link (reload, back button) when it presents the page token
it was given as a cookie; any other browser finds it used.

Every function returns what the page should show next (one of the ``*View`` classes); none raises for anything
the browser sent. Nothing of what the end user typed is kept in a view but non-secret fields, to fill the form
again after a mistake.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from hmac import compare_digest
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from connvault import connection_config
from connvault.catalog.forms import default_form
from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.credential_check import CheckOutcome, check_credentials
from connvault.db.connect_links import ConnectLink
from connvault.db.connections import NewCredentials
from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput, NotFound, ProviderUnavailable, QuotaExceeded
from connvault.models import ApiKeyCredentials, AuthType, BasicCredentials, ConfigSource
from connvault.oauth.pkce import new_state, state_digest
from connvault.observability import MetricName, logger, metrics
from connvault.redacted import Redacted
from connvault.services import connect, quotas
from connvault.validation import is_listed, require_return_url, require_scopes, require_text

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.models import CredentialForm, Provider
    from connvault.oauth.client import OAuthClient
    from connvault.oauth.http import HttpTransport

MAX_PROVIDERS = 20
MAX_TOKEN_LENGTH = 512
MAX_CREDENTIAL_CHECKS = 5
"""Provider calls one link's page may make to check what its end user typed: enough for a few typos, too few
for the page to serve as an oracle for guessed keys (a right key ends the link, so this bounds wrong ones)."""
CHECK_METRICS = {
    CheckOutcome.ACCEPTED: MetricName.CREDENTIAL_CHECK_ACCEPTED,
    CheckOutcome.REFUSED: MetricName.CREDENTIAL_CHECK_REFUSED,
    CheckOutcome.UNAVAILABLE: MetricName.CREDENTIAL_CHECK_UNAVAILABLE,
}


# -- what the tenant asks for --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRequest:
    providers: tuple[str, ...]
    end_user_id: str
    alias: str = ""
    return_url: str | None = None
    scopes: tuple[str, ...] | None = None
    providers_field: str = "providers"
    """The request field errors about the providers name (``provider`` when the tenant named one that way)."""
    require_confirmation: bool = False
    """Park the grant until the tenant confirms it (``services/connect_confirmation.py``): for one OAuth
    provider's authorize URL only; the page does not offer it, so such a session has no link."""
    connection_config: Mapping[str, object] | None = None
    """Values for the URL placeholders of a provider that needs them (``{"subdomain": "acme"}``): such a
    provider is named alone, and its values travel with the link to the page's connect attempt."""


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """``url`` carries the link token: handed to the tenant once and never logged."""

    url: Redacted[str]
    expires_at: datetime


def create_link(uow: UnitOfWork, request: LinkRequest, *, page_url: str, now: Clock = utcnow) -> IssuedLink:
    """A connect link for ``request.providers``. Raises InvalidInput for anything the tenant must fix first:
    an unknown provider, an OAuth provider without an integration, a return URL nobody allowed."""
    end_user_id = require_text(request.end_user_id, "end_user_id", max_length=255)
    alias = require_text(request.alias, "alias", max_length=100, min_length=0)
    slugs = tuple(dict.fromkeys(request.providers))
    if not 1 <= len(slugs) <= MAX_PROVIDERS:
        raise InvalidInput(f"name 1 to {MAX_PROVIDERS} providers", field="providers")
    scopes = None if request.scopes is None else require_scopes(request.scopes)
    started = now()
    expires_at = started + timedelta(seconds=get_settings().connect_link_ttl_seconds)
    token = new_state()
    with uow:
        providers = [_named_provider(uow, slug, request.providers_field) for slug in slugs]
        oauth = [provider for provider in providers if provider.auth_type is AuthType.OAUTH2]
        integrations = {provider.id: uow.integrations.find(provider.id) for provider in oauth}
        for provider in oauth:
            if integrations[provider.id] is None:
                raise InvalidInput(
                    f"configure the integration for {provider.slug!r} first", field=request.providers_field
                )
        if scopes is not None and (len(providers) != 1 or not oauth):
            raise InvalidInput("scopes apply to a link for one OAuth provider", field="scopes")
        config = _link_config(providers, request)
        return_url = None if request.return_url is None else require_return_url(request.return_url, "return_url")
        if return_url is not None:
            allowed = is_listed(return_url, uow.connect_settings.get(uow.tenant).allowed_return_urls)
            everywhere = all(
                is_listed(return_url, integration.allowed_return_urls)
                for integration in integrations.values()
                if integration is not None
            )
            if not allowed and not (everywhere and len(oauth) == len(providers)):
                raise InvalidInput(
                    "return_url is not in the connect settings' allowed_return_urls (or, for OAuth providers "
                    "only, in every integration's)",
                    field="return_url",
                )
        link = ConnectLink(
            id=uuid.uuid4(),
            tenant_id=uow.tenant,
            provider_ids=tuple(provider.id for provider in providers),
            end_user_id=end_user_id,
            alias=alias,
            scopes=scopes,
            return_url=return_url,
            expires_at=expires_at,
            connection_config=config,
        )
        uow.connect_links.purge_expired(started)
        uow.connect_links.add(link, state_digest(token))
        uow.commit()
    return IssuedLink(Redacted(f"{page_url}?{urlencode({'token': token})}"), expires_at)


@dataclass(frozen=True, slots=True)
class StartedSession:
    """What ``POST /connect-sessions`` answers: a connect link (unless the session requires confirmation), and an
    authorize URL too when the session names a single OAuth provider (the flow without the page, as before)."""

    link: IssuedLink | None
    authorize: connect.ConnectSession | None


def start_connect_session(
    uow: UnitOfWork,
    request: LinkRequest,
    *,
    callback_url: str,
    page_url: str,
    oauth: OAuthClient | None = None,
    now: Clock = utcnow,
) -> StartedSession:
    """A connect session: a link to the hosted page for ``request.providers``, plus the provider's authorize URL
    when there is exactly one and it uses OAuth. Raises InvalidInput as ``create_link`` and
    ``connect.create_connect_session`` do."""
    authorize = None
    if request.require_confirmation and len(request.providers) != 1:
        raise InvalidInput("require_confirmation applies to a session for one OAuth provider", field="providers")
    if len(request.providers) == 1:
        with uow:
            provider = _named_provider(uow, request.providers[0], request.providers_field)
        if provider.auth_type is AuthType.OAUTH2:
            authorize = connect.create_connect_session(
                uow,
                connect.ConnectRequest(
                    provider=provider.slug,
                    end_user_id=request.end_user_id,
                    alias=request.alias,
                    return_url=request.return_url,
                    scopes=request.scopes,
                    require_confirmation=request.require_confirmation,
                    connection_config=request.connection_config,
                ),
                callback_url=callback_url,
                oauth=oauth,
                now=now,
            )
        elif request.require_confirmation:
            raise InvalidInput("require_confirmation applies to OAuth providers", field=request.providers_field)
    if request.require_confirmation:
        return StartedSession(None, authorize)
    return StartedSession(create_link(uow, request, page_url=page_url, now=now), authorize)


def _link_config(providers: list[Provider], request: LinkRequest) -> dict[str, str]:
    """The link's ``connection_config``, checked before the link exists: a provider whose URLs need the tenant's
    values is named alone, with them (the page has no way to ask the end user for a shop's subdomain)."""
    needing = [provider for provider in providers if _tenant_keys(provider)]
    if len(providers) == 1:
        return connection_config.tenant_config(providers[0], request.connection_config)
    if needing:
        raise InvalidInput(
            f"provider {needing[0].slug!r} needs connection_config: make a session for it alone",
            field=request.providers_field,
        )
    if request.connection_config:
        raise InvalidInput("connection_config applies to a session for one provider", field="connection_config")
    return {}


def _tenant_keys(provider: Provider) -> list[str]:
    return [key.name for key in provider.connection_config if key.source is ConfigSource.TENANT]


def _named_provider(uow: UnitOfWork, slug: str, field_name: str) -> Provider:
    try:
        return uow.providers.get_by_slug(slug)
    except NotFound:
        raise InvalidInput("unknown provider", field=field_name) from None


# -- what the page shows ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageContext:
    """Whose page it is and where it leads: the tenant's display name, embedding origins and return URL."""

    tenant_name: str
    frame_ancestors: tuple[str, ...] = ()
    return_url: str | None = None

    def return_to(self, *, connection_id: UUID | None = None, error: str | None = None) -> str | None:
        """The return URL with ``connection_id`` or ``error`` added, as the OAuth callback builds it."""
        return connect.CallbackResult(self.return_url, connection_id=connection_id, error=error).redirect_url


@dataclass(frozen=True, slots=True)
class ChoiceView:
    """The list of integrations the link allows. ``problem`` explains why the page came back to it."""

    context: PageContext
    providers: tuple[Provider, ...]
    page_token: Redacted[str]
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialsView:
    """The form of an API-key or basic provider; ``kept`` refills its non-secret fields after a problem."""

    context: PageContext
    provider: Provider
    form: CredentialForm
    page_token: Redacted[str]
    can_choose_another: bool
    problem: str | None = None
    problem_field: str | None = None
    kept: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RedirectView:
    """Off to the provider's consent screen (an OAuth provider was chosen)."""

    location: Redacted[str]


@dataclass(frozen=True, slots=True)
class OutcomeView:
    """The end: connected (``connection_id``) or failed (``error``, with a page token to try again while the
    link lives)."""

    context: PageContext
    provider_name: str | None
    connection_id: UUID | None = None
    error: str | None = None
    retry_token: Redacted[str] | None = None


@dataclass(frozen=True, slots=True)
class UnusableView:
    """A link or page that no longer works: ``unknown_link``, ``expired_link`` or ``used_link``. ``context`` is
    None when not even the tenant is known."""

    reason: str
    context: PageContext | None = None


type View = ChoiceView | CredentialsView | RedirectView | OutcomeView | UnusableView


def open_link(token: Redacted[str] | None, remembered: Redacted[str] | None = None, *, now: Clock = utcnow) -> View:
    """Open a link: use up its token and show the first page. A used link opens again only for the browser that
    holds its page token (``remembered``, from the cookie the first opening set)."""
    digest = _digest(token)
    tenant_id = _tenant_of(digest)
    if digest is None or tenant_id is None:
        return UnusableView("unknown_link")
    page_token = Redacted(new_state())
    started = now()
    window = timedelta(seconds=get_settings().connect_link_ttl_seconds)
    with UnitOfWork(tenant_id) as uow:
        link = uow.connect_links.open(digest, state_digest(page_token.reveal()), started, window)
        if link is not None:
            uow.commit()
            metrics.add_metric(name=MetricName.CONNECT_LINK_OPENED, unit="Count", value=1)
            logger.info("connect link opened", extra={"connect_link_id": str(link.id)})
            return _first_page(uow, link, page_token)
        found = uow.connect_links.find_by_link(digest)
        if found is None:  # a page token presented as a link token
            return UnusableView("unknown_link")
        link, page_digest = found
        context = _context(uow, link)
        if link.completed_at is None and link.expires_at <= started:
            return UnusableView("expired_link", context)
        if remembered is not None and link.is_live(started) and _same_browser(remembered, page_digest):
            return _first_page(uow, link, remembered)
        return UnusableView("used_link", context)


def show_choices(page_token: Redacted[str] | None, *, problem: str | None = None, now: Clock = utcnow) -> View:
    """The list of integrations again ("choose another", "try again")."""
    found = _live_link(page_token, now())
    if isinstance(found, UnusableView):
        return found
    uow, link, token = found
    with uow:
        return _choices(uow, link, token, problem)


def choose_provider(
    page_token: Redacted[str] | None,
    slug: str,
    *,
    callback_url: str,
    oauth: OAuthClient | None = None,
    now: Clock = utcnow,
) -> View:
    """The end user picked ``slug``: an OAuth provider starts its redirect flow, any other shows its form."""
    found = _live_link(page_token, now())
    if isinstance(found, UnusableView):
        return found
    uow, link, token = found
    with uow:
        provider = _allowed_provider(uow, link, slug)
        if provider is None:
            return _choices(uow, link, token, "unknown_provider")
        if provider.auth_type is not AuthType.OAUTH2:
            return _credentials(uow, link, provider, token)
    # The OAuth attempt carries no return URL of its own: the callback shows this page's result, which knows it.
    try:
        session = connect.create_connect_session(
            UnitOfWork(link.tenant_id),
            connect.ConnectRequest(
                provider=provider.slug,
                end_user_id=link.end_user_id,
                alias=link.alias,
                scopes=link.scopes,
                connect_link_id=link.id,
                connection_config=link.connection_config,
            ),
            callback_url=callback_url,
            oauth=oauth,
            now=now,
        )
    except QuotaExceeded:  # the tenant's own sessions fill its quota: nothing the end user did wrong
        logger.info("connect page refused: quota", extra={"connect_link_id": str(link.id)})
        with uow:
            return _choices(uow, link, token, "quota_exceeded")
    except (InvalidInput, ProviderUnavailable):  # its integration was deleted, or its discovery is down
        with uow:
            return _choices(uow, link, token, "provider_not_ready")
    metrics.add_metric(name=MetricName.CONNECT_STARTED, unit="Count", value=1)
    return RedirectView(session.authorize_url)


def submit_credentials(
    page_token: Redacted[str] | None,
    slug: str,
    values: Mapping[str, Redacted[str]],
    *,
    transport: HttpTransport | None = None,
    now: Clock = utcnow,
) -> View:
    """Check what the end user typed against the provider's form (and, when the catalog declares one, against
    the provider itself), then save it as the link's connection."""
    found = _live_link(page_token, now())
    if isinstance(found, UnusableView):
        return found
    uow, link, token = found
    with uow:
        provider = _allowed_provider(uow, link, slug)
        if provider is None or provider.auth_type is AuthType.OAUTH2:
            return _choices(uow, link, token, "unknown_provider")
        view = _credentials(uow, link, provider, token)
    form = view.form
    kept = {f.name: values[f.name].reveal() for f in form.fields if not f.secret and f.name in values}
    problem_field = _invalid_field(form, values)
    if problem_field is not None:
        return _with_problem(view, "invalid_field", problem_field, kept)
    typed = {f.name: values[f.name].reveal() for f in form.fields}
    credentials: ApiKeyCredentials | BasicCredentials
    if provider.auth_type is AuthType.API_KEY:
        credentials = ApiKeyCredentials(Redacted(typed["api_key"]))
    else:
        credentials = BasicCredentials(typed["username"], Redacted(typed["password"]))
    details = {name: value for name, value in kept.items() if name not in ("username",)}
    with uow:  # a full quota says so before any provider call; the save below asks again, under its lock
        if not _has_room(uow, link, provider.id, now):
            return _with_problem(view, "quota_exceeded", None, kept)
        if provider.credential_check is not None and not uow.connect_links.reserve_credential_check(
            link.id, MAX_CREDENTIAL_CHECKS
        ):
            logger.info("connect page refused: credential checks", extra={"connect_link_id": str(link.id)})
            return _with_problem(view, "too_many_checks", None, kept)
        uow.commit()
    if provider.credential_check is not None:
        # The link's connection_config fills the URL as it will be stored (a form field cannot stand in for it).
        place = {**details, **link.connection_config}
        outcome = check_credentials(provider.credential_check, credentials, place, transport=transport)
        metrics.add_metric(name=CHECK_METRICS[outcome], unit="Count", value=1)
        if outcome is CheckOutcome.REFUSED:
            return _with_problem(view, "credentials_refused", None, kept)
        if outcome is CheckOutcome.UNAVAILABLE:
            return _with_problem(view, "provider_unavailable", None, kept)
    finished = now()
    with UnitOfWork(link.tenant_id) as work:
        current = work.connect_links.find_by_page(state_digest(token.reveal()), for_update=True)
        if current is None or not current.is_live(finished):  # the link was used meanwhile (another tab)
            return UnusableView("used_link", view.context)
        if not _has_room(work, link, provider.id, now):
            return _with_problem(view, "quota_exceeded", None, kept)
        connection = work.connections.save_grant(
            link.tenant_id,
            provider.id,
            end_user_id=link.end_user_id,
            alias=link.alias,
            grant=NewCredentials(
                credentials, token_type=None, scopes=(), expires_at=None, connection_config=link.connection_config
            ),
            granted_at=finished,
            metadata=details,
        ).connection  # a key or password replaced has nothing to revoke
        work.connect_links.complete(link.id, connection.id, finished)
        work.commit()
    metrics.add_metric(name=MetricName.CONNECT_COMPLETED, unit="Count", value=1)
    logger.info("connect completed", extra={"connection_id": str(connection.id), "connect_link_id": str(link.id)})
    return OutcomeView(view.context, provider.display_name, connection_id=connection.id)


def finish_oauth(result: connect.CallbackResult, *, now: Clock = utcnow) -> View:
    """The page's last step after an OAuth attempt it started: the connection it made (recorded on the link in the
    grant's own transaction, ``connect._save_grant``), or a retry with a fresh page token while the link lives."""
    if result.tenant_id is None or result.connect_link_id is None:
        return UnusableView("unknown_link")
    finished = now()
    with UnitOfWork(result.tenant_id) as uow:
        link = uow.connect_links.get(result.connect_link_id, for_update=True)
        if link is None:
            return UnusableView("unknown_link")
        context = _context(uow, link)
        if result.connection_id is not None:
            return OutcomeView(context, None, connection_id=result.connection_id)
        retry = None
        if link.is_live(finished):
            retry = Redacted(new_state())
            uow.connect_links.replace_page_token(link.id, state_digest(retry.reveal()))
            uow.commit()
        return OutcomeView(context, None, error=result.error or "unknown_error", retry_token=retry)


# -- helpers ------------------------------------------------------------------------------------------------------


def _digest(token: Redacted[str] | None) -> bytes | None:
    text = token.reveal() if token is not None else ""
    if not text or len(text) > MAX_TOKEN_LENGTH:
        return None
    return state_digest(text)


def _same_browser(remembered: Redacted[str], page_digest: bytes | None) -> bool:
    """Whether the cookie holds the link's current page token: the browser that opened it, reopening it."""
    if page_digest is None:
        return False
    return compare_digest(state_digest(remembered.reveal()), page_digest)


def _tenant_of(digest: bytes | None) -> UUID | None:
    if digest is None:
        return None
    with UnitOfWork(None) as uow:
        return uow.connect_links.tenant_of_token(digest)


def _live_link(
    page_token: Redacted[str] | None, now: datetime
) -> tuple[UnitOfWork, ConnectLink, Redacted[str]] | UnusableView:
    """The live link a page token belongs to, with a unit of work bound to its tenant; or why there is none."""
    digest = _digest(page_token)
    tenant_id = _tenant_of(digest)
    if digest is None or tenant_id is None or page_token is None:
        return UnusableView("used_link")  # a page token that was replaced or used up: the page is stale
    uow = UnitOfWork(tenant_id)
    with uow:
        link = uow.connect_links.find_by_page(digest)
        if link is None:
            return UnusableView("used_link")
        if not link.is_live(now):
            return UnusableView("expired_link", _context(uow, link))
    return uow, link, page_token


def _context(uow: UnitOfWork, link: ConnectLink) -> PageContext:
    settings = uow.connect_settings.get(link.tenant_id)
    name = settings.display_name or uow.tenants.get(link.tenant_id).name
    return PageContext(name, settings.frame_ancestors, link.return_url)


def _providers(uow: UnitOfWork, link: ConnectLink) -> tuple[Provider, ...]:
    """The link's providers that still exist (a custom provider may have been deleted since)."""
    found = []
    for provider_id in link.provider_ids:
        try:
            found.append(uow.providers.get(provider_id))
        except NotFound:
            continue
    return tuple(found)


def _allowed_provider(uow: UnitOfWork, link: ConnectLink, slug: str) -> Provider | None:
    return next((provider for provider in _providers(uow, link) if provider.slug == slug), None)


def _first_page(uow: UnitOfWork, link: ConnectLink, page_token: Redacted[str]) -> View:
    """A link for one API-key or basic provider opens on its form; any other on the list of integrations."""
    providers = _providers(uow, link)
    if len(providers) == 1 and providers[0].auth_type is not AuthType.OAUTH2:
        return _credentials(uow, link, providers[0], page_token)
    return _choices(uow, link, page_token, None)


def _choices(uow: UnitOfWork, link: ConnectLink, page_token: Redacted[str], problem: str | None) -> View:
    providers = _providers(uow, link)
    if not providers:
        return UnusableView("unknown_link", _context(uow, link))
    return ChoiceView(_context(uow, link), providers, page_token, problem)


def _credentials(uow: UnitOfWork, link: ConnectLink, provider: Provider, page_token: Redacted[str]) -> CredentialsView:
    return CredentialsView(
        _context(uow, link),
        provider,
        provider.credential_form or default_form(provider.auth_type),
        page_token,
        can_choose_another=len(link.provider_ids) > 1,
    )


def _has_room(uow: UnitOfWork, link: ConnectLink, provider_id: UUID, now: Clock) -> bool:
    """Whether the tenant's connection quota lets the link save its connection (a reconnect always may)."""
    try:
        quotas.require_room_for_connection(uow, provider_id, link.end_user_id, link.alias, now=now)
    except QuotaExceeded:
        logger.info("connect page refused: quota", extra={"connect_link_id": str(link.id)})
        return False
    return True


def _with_problem(view: CredentialsView, problem: str, field_name: str | None, kept: dict[str, str]) -> View:
    return CredentialsView(
        view.context,
        view.provider,
        view.form,
        view.page_token,
        view.can_choose_another,
        problem=problem,
        problem_field=field_name,
        kept=kept,
    )


def _invalid_field(form: CredentialForm, values: Mapping[str, Redacted[str]]) -> str | None:
    """The first field whose value is missing, too long, holds control characters or misses its pattern."""
    for form_field in form.fields:
        value = values[form_field.name].reveal() if form_field.name in values else ""
        if not value.strip() or len(value) > form_field.max_length:
            return form_field.name
        if any(ord(char) < 0x20 or ord(char) == 0x7F or 0xD800 <= ord(char) <= 0xDFFF for char in value):
            return form_field.name
        if form_field.pattern is not None and re.fullmatch(form_field.pattern, value) is None:
            return form_field.name
    return None
