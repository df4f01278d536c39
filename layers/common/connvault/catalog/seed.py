"""Write the catalog into ``providers`` as the global rows (tenant_id NULL): an idempotent upsert by slug.

The whole catalog goes to the server as one JSON document and is upserted by a single statement, so a
seed is atomic without an explicit transaction and costs one round trip. A row is only rewritten (and its
``updated_at`` bumped, by the table's trigger) when some catalog column really differs; a second run changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connvault.catalog.forms import check_record, form_record
from connvault.catalog.loader import CatalogEntry, load_catalog
from connvault.connection_config import keys_document
from connvault.errors import InvalidInput, MigrationError
from connvault.proxy.credentials import api_auth_document

if TYPE_CHECKING:
    import pg8000.native

# Every column the catalog owns, with its SQL type for jsonb_to_recordset. Columns left out
# (id, tenant_id, metadata_fetched_at, created_at, updated_at) are never written by the seed.
CATALOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("display_name", "text"),
    ("auth_type", "text"),
    ("authorization_url", "text"),
    ("token_url", "text"),
    ("revocation_url", "text"),
    ("revocation_scope", "text"),
    ("default_scopes", "text[]"),
    ("scope_separator", "text"),
    ("scope_parameter", "text"),
    ("pkce", "boolean"),
    ("token_endpoint_auth_method", "text"),
    ("rotates_refresh_tokens", "boolean"),
    ("refresh_margin_seconds", "integer"),
    ("authorize_params", "jsonb"),
    ("token_response_shape", "text"),
    ("issuer", "text"),
    ("require_iss", "boolean"),
    ("discovery_url", "text"),
    ("max_concurrent_refreshes", "integer"),
    ("docs_url", "text"),
    ("account_id_fields", "text[]"),
    ("credential_form", "jsonb"),
    ("credential_check", "jsonb"),
    ("connection_config", "jsonb"),
    ("api_base_url", "text"),
    ("token_params", "jsonb"),
    ("api_auth", "jsonb"),
    ("device_authorization_url", "text"),
)
_NAMES = [name for name, _ in CATALOG_COLUMNS]
_UPSERT = f"""
WITH written AS (
    INSERT INTO providers (slug, {", ".join(_NAMES)})
    SELECT slug, {", ".join(_NAMES)}
    FROM jsonb_to_recordset(CAST(:entries AS jsonb))
        AS entry (slug text, {", ".join(f"{name} {sql_type}" for name, sql_type in CATALOG_COLUMNS)})
    ON CONFLICT (slug) WHERE tenant_id IS NULL DO UPDATE
    SET {", ".join(f"{name} = EXCLUDED.{name}" for name in _NAMES)}
    WHERE ({", ".join(f"providers.{name}" for name in _NAMES)})
        IS DISTINCT FROM ({", ".join(f"EXCLUDED.{name}" for name in _NAMES)})
    RETURNING 1
)
SELECT count(*) FROM written
"""


def catalog_record(entry: CatalogEntry) -> dict[str, Any]:
    """The entry as one JSON object of ``providers`` columns (enums as their values, scopes as an array)."""
    return {
        "slug": entry.slug,
        "display_name": entry.display_name,
        "auth_type": entry.auth_type.value,
        "authorization_url": entry.authorization_url,
        "token_url": entry.token_url,
        "revocation_url": entry.revocation_url,
        "revocation_scope": entry.revocation_scope.value,
        "default_scopes": list(entry.default_scopes),
        "scope_separator": entry.scope_separator,
        "scope_parameter": entry.scope_parameter.value,
        "pkce": entry.pkce,
        "token_endpoint_auth_method": entry.token_endpoint_auth_method.value,
        "rotates_refresh_tokens": entry.rotates_refresh_tokens,
        "refresh_margin_seconds": entry.refresh_margin_seconds,
        "authorize_params": dict(entry.authorize_params),
        "token_response_shape": entry.token_response_shape.value,
        "issuer": entry.issuer,
        "require_iss": entry.require_iss,
        "discovery_url": entry.discovery_url,
        "max_concurrent_refreshes": entry.max_concurrent_refreshes,
        "docs_url": entry.docs_url,
        "account_id_fields": list(entry.account_id_fields),
        "credential_form": form_record(entry.credential_form) if entry.credential_form else None,
        "credential_check": check_record(entry.credential_check) if entry.credential_check else None,
        "connection_config": keys_document(entry.connection_config),
        "api_base_url": entry.api_base_url,
        "token_params": dict(entry.token_params),
        "api_auth": api_auth_document(entry.api_auth),
        "device_authorization_url": entry.device_authorization_url,
    }


def seed_catalog(connection: pg8000.native.Connection, entries: Sequence[CatalogEntry] | None = None) -> int:
    """Upsert the catalog (``entries``, by default ``providers.yaml``); return how many rows were inserted or changed.

    Called by ``connvault.migrations.migrate()`` on the owner's connection, after the migrations and
    inside its advisory lock, so two runners never seed at once. Tenant custom providers that share a
    slug with a catalog entry are untouched: the conflict target is the global rows' partial unique index.

    A provider that left the catalog is NOT deleted: integrations, connections and OAuth sessions
    reference providers with ON DELETE CASCADE, so deleting the row would silently destroy every tenant's
    connections to it. Retiring a provider is a deliberate migration, not a side effect of editing YAML.
    """
    try:
        catalog = load_catalog() if entries is None else entries
    except InvalidInput as exc:
        raise MigrationError(f"provider catalog: {exc.message}") from exc
    document = json.dumps([catalog_record(entry) for entry in catalog])
    rows = connection.run(_UPSERT, entries=document)
    return int(rows[0][0])
