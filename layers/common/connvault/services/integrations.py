"""A tenant's OAuth apps: create or replace, read, list, delete. The client secret goes in and never out.

An integration for a slug outside the global catalog may carry the definition of the tenant's own provider
(``IntegrationInput.custom_provider``, see ``services/custom_providers.py``); the provider and the integration
are then written in one transaction, so neither exists without the other after a failed request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connvault.clock import Clock, utcnow
from connvault.db.tenants import Resource
from connvault.errors import InvalidInput, NotFound
from connvault.models import AuthType, Integration
from connvault.services import quotas
from connvault.services.custom_providers import (
    CustomProviderInput,
    prepare_custom_provider,
    store_custom_provider,
)
from connvault.validation import require_return_url, require_scopes, require_text

if TYPE_CHECKING:
    from connvault.db.uow import UnitOfWork
    from connvault.oauth.http import HttpTransport
    from connvault.redacted import Redacted

MAX_RETURN_URLS = 20


@dataclass(frozen=True, slots=True)
class IntegrationInput:
    """What a tenant sends to create or replace an integration. ``client_secret=None`` keeps the stored one.

    ``custom_provider`` defines (or redefines) the tenant's own provider under the slug; without it the slug
    must name a catalog provider or an already defined custom one, whose definition is kept.
    """

    client_id: str
    client_secret: Redacted[str] | None = None
    scopes: tuple[str, ...] = ()
    allowed_return_urls: tuple[str, ...] = ()
    custom_provider: CustomProviderInput | None = None


def save_integration(
    uow: UnitOfWork,
    provider_slug: str,
    data: IntegrationInput,
    *,
    transport: HttpTransport | None = None,
    now: Clock = utcnow,
) -> Integration:
    """Create or replace the integration (and the custom provider, when one is defined with it).

    Raises InvalidInput, Conflict (a custom provider on a catalog slug), ProviderUnavailable (the custom
    provider's discovery URL did not answer).
    """
    client_id = require_text(data.client_id, "client_id", max_length=512)
    if data.client_secret is not None:
        require_text(data.client_secret.reveal(), "client_secret", max_length=4096)
    scopes = require_scopes(data.scopes)
    if len(data.allowed_return_urls) > MAX_RETURN_URLS:
        raise InvalidInput(f"at most {MAX_RETURN_URLS} allowed_return_urls", field="allowed_return_urls")
    return_urls = tuple(
        dict.fromkeys(require_return_url(url, "allowed_return_urls") for url in data.allowed_return_urls)
    )
    custom = None
    if data.custom_provider is not None:
        custom = prepare_custom_provider(
            uow,
            provider_slug,
            data.custom_provider,
            default_scopes=scopes,
            sends_client_secret=data.client_secret is not None,
            transport=transport,
            now=now,
        )
    with uow:
        if custom is not None:
            if uow.providers.find_custom(custom.slug) is None:
                quotas.require_room(uow, Resource.CUSTOM_PROVIDERS, now=now)
            provider = store_custom_provider(uow, custom)
        else:
            try:
                provider = uow.providers.get_by_slug(provider_slug)
            except NotFound:
                raise InvalidInput("unknown provider; send custom_provider to define one", field="provider") from None
        if provider.auth_type is not AuthType.OAUTH2:
            raise InvalidInput(
                f"provider {provider_slug!r} does not use OAuth; no integration needed", field="provider"
            )
        if uow.integrations.find(provider.id) is None:
            quotas.require_room(uow, Resource.INTEGRATIONS, now=now)
        integration = uow.integrations.save(
            uow.tenant,
            provider,
            client_id=client_id,
            client_secret=data.client_secret,
            keep_client_secret=data.client_secret is None,
            scopes=scopes,
            allowed_return_urls=return_urls,
        )
        uow.commit()
    return integration


def get_integration(uow: UnitOfWork, provider_slug: str) -> Integration:
    with uow:
        return uow.integrations.get(uow.providers.get_by_slug(provider_slug))


def list_integrations(uow: UnitOfWork) -> list[Integration]:
    with uow:
        return uow.integrations.list_all()


def delete_integration(uow: UnitOfWork, provider_slug: str) -> None:
    """Delete the integration. Its connections stay; they can no longer refresh until it is recreated."""
    with uow:
        provider = uow.providers.get_by_slug(provider_slug)
        if not uow.integrations.delete(provider.id):
            raise NotFound(f"no integration for provider {provider_slug!r}")
        uow.commit()
