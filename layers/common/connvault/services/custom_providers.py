"""A tenant's own OAuth providers: defined without a release, from discovery metadata or explicit endpoints.

A custom provider is a ``providers`` row carrying the tenant's id, so row-level security hides it from every
other tenant; its slug may not be one of the global catalog's. Once defined it is an ordinary ``Provider``:
connect, callback, token fetch, scheduled refresh and revocation read it like a catalog entry.

With a ``discovery_url`` the metadata decides the endpoints, the issuer (and whether the callback must carry
``iss``, RFC 9207), PKCE and the token endpoint's client authentication; the tenant decides the rest (name,
scope separator, extra authorize parameters, refresh margin). The metadata is refetched when a connect
session starts and it is older than ``discovery_max_age_seconds``, and on demand (``refresh_metadata``).
A refetch must name the same issuer as before. Without a ``discovery_url`` the tenant gives everything and
nothing is fetched.

No transaction is held open across a metadata fetch: the definition is read, the fetch made, then the
result written in a new transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from connvault.clock import Clock, utcnow
from connvault.config import get_settings
from connvault.connection_status import REVOCATION_ENDPOINT_MOVED, TOKEN_ENDPOINT_MOVED
from connvault.errors import Conflict, DiscoveryFailed, InvalidInput, NotFound, ProviderUnavailable
from connvault.models import AuthType, Provider, RevocationScope, TokenEndpointAuthMethod
from connvault.oauth import discovery
from connvault.observability import logger
from connvault.validation import ascii_url, require_outbound_url, require_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from datetime import datetime

    from connvault.db.uow import UnitOfWork
    from connvault.oauth.http import HttpTransport

SCOPE_SEPARATORS = frozenset({" ", ",", "+"})
SECRET_DESTINATIONS = ("authorization_url", "token_url", "revocation_url", "device_authorization_url", "issuer")
"""Without discovery, the fields that decide where the client secret and refresh tokens are sent (the
authorization endpoint receives the client id and the end user, the device authorization endpoint the client's
authentication; the issuer decides which ``iss`` is trusted)."""
URL_FIELDS = (
    "discovery_url",
    "issuer",
    "authorization_url",
    "token_url",
    "revocation_url",
    "device_authorization_url",
    "api_base_url",
)
"""A definition's URLs. None takes a placeholder: a custom provider declares no ``connection_config`` to fill one,
and the OAuth client never sends a URL still holding one, so a token_url with ``{x}`` passed definition and then
failed every refresh."""
MAX_AUTHORIZE_PARAMS = 20
MAX_REFRESH_MARGIN_SECONDS = 86_400
_METADATA_DECIDES = (
    "authorization_url",
    "token_url",
    "revocation_url",
    "device_authorization_url",
    "require_iss",
    "pkce",
    "token_endpoint_auth_method",
)


@dataclass(frozen=True, slots=True)
class CustomProviderInput:
    """What a tenant sends to define a provider: ``discovery_url``, or ``authorization_url`` and ``token_url``.

    ``issuer`` with a ``discovery_url`` is the issuer the metadata must name (default: the one the URL was
    built from); without one it is the value ``iss`` is checked against at the callback. ``pkce`` defaults
    to True and ``token_endpoint_auth_method`` to client_secret_basic when there is no metadata to say.
    """

    display_name: str | None = None
    discovery_url: str | None = None
    issuer: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    revocation_scope: RevocationScope = RevocationScope.TOKEN
    device_authorization_url: str | None = None
    require_iss: bool | None = None
    pkce: bool | None = None
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = None
    scope_separator: str = " "
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    refresh_margin_seconds: int | None = None
    api_base_url: str | None = None
    """Where the proxy sends this provider's API calls; a plain URL (custom providers take no placeholders)."""


def prepare_custom_provider(
    uow: UnitOfWork,
    slug: str,
    definition: CustomProviderInput,
    *,
    default_scopes: tuple[str, ...] = (),
    sends_client_secret: bool,
    transport: HttpTransport | None = None,
    now: Clock = utcnow,
) -> Provider:
    """The provider ``definition`` describes, validated and with its metadata fetched, not yet stored.

    ``sends_client_secret`` says whether the request carries a client secret; without one, a secret the
    integration already stores counts, since it is kept. Store the result with ``store_custom_provider``
    in the transaction that saves the integration. Raises InvalidInput, Conflict (a global slug),
    ProviderUnavailable (the discovery URL did not answer).
    """
    _check(slug, definition)
    with uow:
        _refuse_global(uow, slug)
        existing = uow.providers.find_custom(slug)
        integration = None if existing is None else uow.integrations.find(existing.id)
    if existing is not None and integration is not None and integration.has_client_secret and not sends_client_secret:
        moved = _moved_destination(existing, definition)
        if moved is not None:
            raise Conflict(
                f"changing custom_provider.{moved} would send the stored client secret and refresh tokens to "
                "another server; send client_secret again in the same request",
                field=f"custom_provider.{moved}",
            )
    provider = Provider(
        id=existing.id if existing is not None else uuid.uuid4(),
        slug=slug,
        display_name=definition.display_name or slug,
        auth_type=AuthType.OAUTH2,
        # The end user's browser goes there: one ASCII spelling, as return URLs, since it reaches the connect page's
        # Location and Content-Security-Policy headers (raw non-ASCII broke them).
        authorization_url=(
            None
            if definition.authorization_url is None
            else ascii_url(definition.authorization_url, "custom_provider.authorization_url")
        ),
        token_url=definition.token_url,
        revocation_url=definition.revocation_url,
        revocation_scope=definition.revocation_scope,
        device_authorization_url=definition.device_authorization_url,
        default_scopes=default_scopes,
        scope_separator=definition.scope_separator,
        pkce=True if definition.pkce is None else definition.pkce,
        token_endpoint_auth_method=definition.token_endpoint_auth_method or TokenEndpointAuthMethod.CLIENT_SECRET_BASIC,
        refresh_margin_seconds=(
            get_settings().default_refresh_margin_seconds
            if definition.refresh_margin_seconds is None
            else definition.refresh_margin_seconds
        ),
        authorize_params=dict(definition.authorize_params),
        issuer=definition.issuer,
        require_iss=bool(definition.require_iss),
        discovery_url=definition.discovery_url,
        tenant_id=uow.tenant,
        # The OpenID subject, whenever the provider answers with an id token (it does for the openid scope).
        account_id_fields=("id_token.sub",),
        api_base_url=definition.api_base_url,
    )
    if definition.discovery_url is None:
        return provider
    has_secret = sends_client_secret or (integration is not None and integration.has_client_secret)
    with _as_discovery_failure():
        metadata = discovery.fetch_metadata(
            definition.discovery_url, expected_issuer=definition.issuer, transport=transport
        )
        return with_metadata(provider, metadata, has_client_secret=has_secret, fetched_at=now())


def store_custom_provider(uow: UnitOfWork, provider: Provider) -> Provider:
    """Write a prepared provider inside the caller's open transaction (the slug is checked again there).

    When the token endpoint, or the revocation endpoint, moves to another origin (scheme, host, port), the
    provider's connections need their end users again (``needs_reauth``, reason ``token_endpoint_moved`` or
    ``revocation_endpoint_moved``) and its grants parked for confirmation are dropped: their tokens were issued
    by the old server and are never sent to the new one, neither to refresh nor to revoke
    (``connection_status.issuer_left``). A move within one origin keeps them working. Whether the request
    carried a client secret does not matter here: a new secret proves nothing about the tokens already held.
    """
    _refuse_global(uow, provider.slug)
    previous = uow.providers.find_custom(provider.slug)
    stored = uow.providers.save_custom(provider)
    reason = None if previous is None else _issuer_left(previous, stored)
    if reason is not None:
        uow.connections.require_reauth_for_provider(stored.id, reason)
        uow.connect_confirmations.drop_for_provider(stored.id)
    return stored


def _issuer_left(previous: Provider, stored: Provider) -> str | None:
    """Why the provider's stored grants may no longer go to its endpoints, or None: the token endpoint is on
    another origin, or the revocation endpoint is on an origin that was neither the old revocation endpoint's nor
    the old token endpoint's."""
    if _origin(previous.token_url) != _origin(stored.token_url):
        return TOKEN_ENDPOINT_MOVED
    if stored.revocation_url is not None and _origin(stored.revocation_url) not in (
        _origin(previous.revocation_url),
        _origin(previous.token_url),
    ):
        return REVOCATION_ENDPOINT_MOVED
    return None


def refresh_metadata(
    uow: UnitOfWork, slug: str, *, transport: HttpTransport | None = None, now: Clock = utcnow
) -> Provider:
    """Fetch the custom provider's metadata again now, whatever its age.

    Raises NotFound (no custom provider of this tenant has that slug), InvalidInput (it has no discovery_url,
    or the metadata is no longer acceptable), ProviderUnavailable.
    """
    with uow:
        provider = uow.providers.find_custom(slug)
        if provider is None:
            raise NotFound("no custom provider of that slug")
        if provider.discovery_url is None:
            raise InvalidInput(f"custom provider {slug!r} has no discovery_url to refresh from", field="provider")
        integration = uow.integrations.find(provider.id)
    return _refresh(uow, provider, integration is not None and integration.has_client_secret, transport, now)


def refresh_stale_metadata(
    uow: UnitOfWork, slug: str, *, transport: HttpTransport | None = None, now: Clock = utcnow
) -> None:
    """Refetch the metadata of the custom provider ``slug`` if it is older than ``discovery_max_age_seconds``.

    Called when a connect session starts. A server that does not answer leaves the stored metadata in use
    (it is retried on the next start); metadata that is no longer acceptable (another issuer, a missing
    endpoint) raises InvalidInput, since connecting through it would not be safe. Anything else is a no-op.
    """
    max_age = timedelta(seconds=get_settings().discovery_max_age_seconds)
    with uow:
        provider = uow.providers.find_custom(slug)
        if provider is None or not _is_stale(provider, now(), max_age):
            return
        integration = uow.integrations.find(provider.id)
    try:
        _refresh(uow, provider, integration is not None and integration.has_client_secret, transport, now)
    except ProviderUnavailable as exc:
        logger.info(
            "discovery metadata refresh failed; using the stored metadata",
            extra={"provider": slug, "error_code": exc.reason or exc.code},
        )


def with_metadata(
    provider: Provider, metadata: discovery.ProviderMetadata, *, has_client_secret: bool, fetched_at: datetime
) -> Provider:
    """``provider`` with every field the metadata decides taken from ``metadata``."""
    return replace(
        provider,
        # The one ASCII spelling a given authorization_url gets (``prepare_custom_provider``): discovery's went
        # to the connect page's headers raw (an outside probe).
        authorization_url=ascii_url(metadata.authorization_endpoint, "authorization_endpoint"),
        token_url=metadata.token_endpoint,
        revocation_url=metadata.revocation_endpoint,
        device_authorization_url=metadata.device_authorization_endpoint,
        issuer=metadata.issuer,
        require_iss=metadata.iss_parameter_supported,
        pkce=metadata.pkce,
        token_endpoint_auth_method=metadata.auth_method(has_client_secret=has_client_secret),
        metadata_fetched_at=fetched_at,
    )


def _refresh(
    uow: UnitOfWork, provider: Provider, has_client_secret: bool, transport: HttpTransport | None, now: Clock
) -> Provider:
    assert provider.discovery_url is not None
    # The issuer stored at definition must not change: a document naming another one is refused.
    metadata = discovery.fetch_metadata(provider.discovery_url, expected_issuer=provider.issuer, transport=transport)
    refreshed = with_metadata(provider, metadata, has_client_secret=has_client_secret, fetched_at=now())
    with uow:
        saved = uow.providers.save_metadata(refreshed)
        if saved is None:
            # Redefined or removed while fetching: the newer definition stands.
            raise Conflict(f"custom provider {provider.slug!r} changed while its metadata was fetched")
        uow.commit()
    return saved


@contextlib.contextmanager
def _as_discovery_failure() -> Iterator[None]:
    """Metadata a definition needs that could not be had is the tenant's to act on: 422 ``discovery_failed``, whether
    the server was unreachable, blocked, or served something unusable. The message says which, never how the
    network failed (see ``connvault.egress``), and never quotes the document."""
    try:
        yield
    except ProviderUnavailable as exc:
        raise DiscoveryFailed(f"discovery failed: {exc.message}", field="custom_provider.discovery_url") from None
    except DiscoveryFailed:
        raise
    except InvalidInput as exc:
        raise DiscoveryFailed(f"discovery failed: {exc.message}", field=exc.field) from None


def _moved_destination(existing: Provider, definition: CustomProviderInput) -> str | None:
    """The first field of ``definition`` that changes where the provider's secrets go, or None.

    With discovery, the discovery URL and a given issuer decide: the same server's metadata may move its own
    endpoints. Without it, each endpoint (and the issuer ``iss`` is checked against) counts.
    """
    if definition.discovery_url is not None or existing.discovery_url is not None:
        if definition.discovery_url != existing.discovery_url:
            return "discovery_url"
        if definition.issuer is not None and definition.issuer != existing.issuer:
            return "issuer"
        return None
    for name in SECRET_DESTINATIONS:
        if getattr(definition, name) != getattr(existing, name):
            return name
    return None


def _origin(url: str | None) -> tuple[str, str | None, int | None] | None:
    if url is None:
        return None
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _is_stale(provider: Provider, now: datetime, max_age: timedelta) -> bool:
    if provider.discovery_url is None:
        return False
    return provider.metadata_fetched_at is None or now - provider.metadata_fetched_at >= max_age


def _refuse_global(uow: UnitOfWork, slug: str) -> None:
    if uow.providers.is_global_slug(slug):
        raise Conflict(f"{slug!r} is a provider of the global catalog; give the custom provider another slug")


def _check(slug: str, definition: CustomProviderInput) -> None:
    """Every rule on a definition that needs no database and no network; raises InvalidInput."""
    # Imported here: the catalog loader pulls in yaml, which only a definition needs.
    from connvault.catalog.loader import RESERVED_AUTHORIZE_PARAMS, SLUG_PATTERN

    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(f"a provider slug must match {SLUG_PATTERN.pattern}", field="provider")
    if definition.display_name is not None:
        require_text(definition.display_name, "custom_provider.display_name", max_length=200)
    for name in URL_FIELDS:
        value = getattr(definition, name)
        if value is not None and ("{" in value or "}" in value):
            raise InvalidInput(f"a custom provider's {name} takes no placeholders", field=f"custom_provider.{name}")
    if definition.issuer is not None:
        require_outbound_url(definition.issuer, "custom_provider.issuer", allow_query=False)
    if definition.discovery_url is not None:
        require_outbound_url(definition.discovery_url, "custom_provider.discovery_url", allow_query=False)
        if definition.issuer is None and discovery.issuer_of(definition.discovery_url) is None:
            raise InvalidInput(
                "discovery_url is not a /.well-known/openid-configuration or /.well-known/oauth-authorization-server "
                "URL; give the issuer too",
                field="custom_provider.discovery_url",
            )
        for name in _METADATA_DECIDES:
            if getattr(definition, name) is not None:
                raise InvalidInput(
                    f"with discovery_url, {name} comes from the metadata; leave it out",
                    field=f"custom_provider.{name}",
                )
    else:
        for name in ("authorization_url", "token_url"):
            if getattr(definition, name) is None:
                raise InvalidInput(
                    f"a custom provider needs discovery_url, or authorization_url and token_url; {name} is missing",
                    field=f"custom_provider.{name}",
                )
        require_outbound_url(definition.authorization_url or "", "custom_provider.authorization_url")
        require_outbound_url(definition.token_url or "", "custom_provider.token_url")
        for name in ("revocation_url", "device_authorization_url"):
            if getattr(definition, name) is not None:
                require_outbound_url(getattr(definition, name), f"custom_provider.{name}")
        if definition.require_iss and definition.issuer is None:
            raise InvalidInput("require_iss needs the issuer", field="custom_provider.issuer")
    if definition.api_base_url is not None:
        require_outbound_url(definition.api_base_url, "custom_provider.api_base_url", allow_query=False)
    if definition.scope_separator not in SCOPE_SEPARATORS:
        raise InvalidInput(
            "scope_separator must be a space, a comma or a plus", field="custom_provider.scope_separator"
        )
    margin = definition.refresh_margin_seconds
    if margin is not None and not 0 <= margin <= MAX_REFRESH_MARGIN_SECONDS:
        raise InvalidInput(
            f"refresh_margin_seconds must be 0 to {MAX_REFRESH_MARGIN_SECONDS}",
            field="custom_provider.refresh_margin_seconds",
        )
    params = definition.authorize_params
    if len(params) > MAX_AUTHORIZE_PARAMS:
        raise InvalidInput(f"at most {MAX_AUTHORIZE_PARAMS} authorize_params", field="custom_provider.authorize_params")
    for name, value in params.items():
        require_text(name, "custom_provider.authorize_params", max_length=128)
        require_text(value, "custom_provider.authorize_params", max_length=1024, min_length=0)
        if name in RESERVED_AUTHORIZE_PARAMS:
            raise InvalidInput(
                "authorize_params may not set a parameter connvault sets itself (client_id, redirect_uri, "
                "response_type, state, scope, code_challenge, code_challenge_method)",
                field="custom_provider.authorize_params",
            )
