"""Putting a ``DemoProvider`` into the catalog and giving a tenant an integration for it.

Shared by ``make run`` and the tests, so both exercise the same rows the deployed code reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connvault.db.uow import UnitOfWork
from connvault.models import ConnectSettings
from connvault.redacted import Redacted
from connvault.services import connect_links, connect_settings, integrations, tenants

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.db.target import DatabaseTarget
    from connvault.services.connect_links import IssuedLink
    from demo_provider import DemoProvider

DEMO_SLUG = "demo"
DEMO_API_KEY_SLUG = "demo-apikey"
DEMO_RETURN_URL = "http://127.0.0.1:3000/demo/done"
DEMO_TENANT_DISPLAY_NAME = "Acme Demo"


def install_demo_provider(
    owner: DatabaseTarget,
    provider: DemoProvider,
    *,
    slug: str = DEMO_SLUG,
    rotates_refresh_tokens: bool | None = None,
    pkce: bool = True,
    refresh_margin_seconds: int = 300,
    require_iss: bool = False,
    max_concurrent_refreshes: int | None = None,
    account_id_fields: tuple[str, ...] = (),
    connection_config: Mapping[str, Any] | None = None,
    api_base_url: str | None = None,
    revocation_scope: str = "token",
) -> UUID:
    """Upsert a global catalog row pointing at ``provider`` (as the owner: the app role cannot write it).

    ``connection_config`` declares per-connection keys as the catalog does (``{"instance_url": {"kind":
    "origin", "source": "token_response", "domains": [...]}}``); ``api_base_url`` defaults to the demo API."""
    settings = provider.settings
    rotates = settings.rotate_refresh_tokens if rotates_refresh_tokens is None else rotates_refresh_tokens
    base = provider.base_url
    connection = owner.connect()
    try:
        rows = connection.run(
            """
            INSERT INTO providers (slug, display_name, auth_type, authorization_url, token_url, revocation_url,
                default_scopes, pkce, token_endpoint_auth_method, rotates_refresh_tokens, refresh_margin_seconds,
                authorize_params, issuer, require_iss, max_concurrent_refreshes, account_id_fields,
                connection_config, api_base_url, revocation_scope, device_authorization_url)
            VALUES (:slug, 'Demo provider', 'oauth2', :auth, :token, :revoke, ARRAY['read', 'write'], :pkce,
                :method, :rotates, :margin, CAST(:params AS jsonb), :issuer, :require_iss, :cap, :account_id_fields,
                CAST(:config AS jsonb), :api, :revocation_scope, :device)
            ON CONFLICT (slug) WHERE tenant_id IS NULL DO UPDATE SET
                authorization_url = EXCLUDED.authorization_url, token_url = EXCLUDED.token_url,
                revocation_url = EXCLUDED.revocation_url, pkce = EXCLUDED.pkce,
                token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method,
                rotates_refresh_tokens = EXCLUDED.rotates_refresh_tokens,
                refresh_margin_seconds = EXCLUDED.refresh_margin_seconds, issuer = EXCLUDED.issuer,
                require_iss = EXCLUDED.require_iss, max_concurrent_refreshes = EXCLUDED.max_concurrent_refreshes,
                account_id_fields = EXCLUDED.account_id_fields, connection_config = EXCLUDED.connection_config,
                api_base_url = EXCLUDED.api_base_url, revocation_scope = EXCLUDED.revocation_scope,
                device_authorization_url = EXCLUDED.device_authorization_url
            RETURNING id
            """,
            slug=slug,
            auth=f"{base}/authorize",
            token=f"{base}/token",
            revoke=f"{base}/revoke",
            pkce=pkce,
            method=settings.token_endpoint_auth_method,
            rotates=rotates,
            margin=refresh_margin_seconds,
            params=json.dumps({}),
            issuer=provider.issuer,
            require_iss=require_iss,
            cap=max_concurrent_refreshes,
            account_id_fields=list(account_id_fields),
            config=json.dumps(dict(connection_config or {})),
            api=api_base_url if api_base_url is not None else f"{base}/api",
            revocation_scope=revocation_scope,
            device=f"{base}/device_authorization",
        )
    finally:
        connection.close()
    return rows[0][0]


def install_demo_api_key_provider(
    owner: DatabaseTarget, provider: DemoProvider, *, slug: str = DEMO_API_KEY_SLUG
) -> UUID:
    """Upsert a global API-key provider whose connect page form checks keys against ``provider``'s ``/api/me``."""
    form = {
        "fields": [
            {
                "name": "api_key",
                "label": "Demo API key",
                "pattern": "dk_[A-Za-z0-9_]{8,64}",
                "hint": "Starts with dk_. The devserver prints one that works.",
            }
        ],
    }
    check = {"url": f"{provider.base_url}/api/me", "auth": "bearer"}
    connection = owner.connect()
    try:
        rows = connection.run(
            """
            INSERT INTO providers (slug, display_name, auth_type, credential_form, credential_check)
            VALUES (:slug, 'Demo API', 'api_key', CAST(:form AS jsonb), CAST(:check AS jsonb))
            ON CONFLICT (slug) WHERE tenant_id IS NULL DO UPDATE SET
                credential_form = EXCLUDED.credential_form, credential_check = EXCLUDED.credential_check,
                updated_at = now()
            RETURNING id
            """,
            slug=slug,
            form=json.dumps(form),
            check=json.dumps(check),
        )
    finally:
        connection.close()
    return rows[0][0]


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: UUID
    api_key: Redacted[str]


def create_demo_tenant(
    provider: DemoProvider, *, name: str = "Demo tenant", slug: str = DEMO_SLUG, return_url: str = DEMO_RETURN_URL
) -> DemoTenant:
    """A tenant with an API key, an integration holding the demo provider's client credentials, and connect page
    settings that name it and allow ``return_url`` for any connect link."""
    tenant = tenants.create_tenant(name)
    key = tenants.create_api_key(UnitOfWork(tenant.id))
    settings = provider.settings
    integrations.save_integration(
        UnitOfWork(tenant.id),
        slug,
        integrations.IntegrationInput(
            client_id=settings.client_id,
            client_secret=Redacted(settings.client_secret) if settings.client_secret else None,
            scopes=("read",),
            allowed_return_urls=(return_url,),
        ),
    )
    connect_settings.save_settings(
        UnitOfWork(tenant.id),
        ConnectSettings(display_name=DEMO_TENANT_DISPLAY_NAME, allowed_return_urls=(return_url,)),
    )
    return DemoTenant(tenant.id, key.plaintext)


def demo_connect_url(tenant: DemoTenant, gateway_url: str, return_url: str) -> IssuedLink:
    """A connect link for the demo tenant offering both demo providers, as ``POST /connect-sessions`` makes one."""
    started = connect_links.start_connect_session(
        UnitOfWork(tenant.tenant_id),
        connect_links.LinkRequest(providers=(DEMO_SLUG, DEMO_API_KEY_SLUG), end_user_id="me", return_url=return_url),
        callback_url=f"{gateway_url}/oauth/callback",
        page_url=f"{gateway_url}/connect",
    )
    return started.link
