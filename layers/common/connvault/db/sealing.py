"""The process's ``Sealer``, blind-index key cache and opened credentials, built once on first use.

They live at the repositories' floor because that is where they are needed (every unit of work seals and opens
with them) and because the sealer needs this database: a data-key cache miss reads the tenant's salt
(``connvault_tenant_key_salt``) through the process's prepared-statement connection, so token fetch's first request
opens that one connection and no other. ``wiring`` hands the same instances to the services that take them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connvault.config import get_settings
from connvault.crypto.blind_index import BlindIndexKeys
from connvault.crypto.data_keys import DataKeys
from connvault.crypto.kms import get_kms_client
from connvault.crypto.sealer import Sealer
from connvault.db.fast_reads import get_fast_reads
from connvault.db.sealed_credentials import OpenedCredentials
from connvault.once import once

if TYPE_CHECKING:
    from uuid import UUID


def tenant_key_salt(tenant_id: UUID) -> UUID:
    """The salt in a tenant's KMS encryption context, read on a data-key cache miss."""
    return get_fast_reads().tenant_key_salt(tenant_id)


@once
def get_sealer() -> Sealer:
    return Sealer(DataKeys.from_settings(get_settings(), get_kms_client(), tenant_key_salt))


@once
def get_blind_index_keys() -> BlindIndexKeys:
    """The process's opened blind-index keys, kept as long as data keys are."""
    return BlindIndexKeys(max_age_seconds=get_settings().data_key_max_age_seconds)


OPENED_CREDENTIALS_MEMORY = 4096
"""Connections whose opened credentials a token function keeps (a few kilobytes each at most)."""


@once
def get_opened_credentials() -> OpenedCredentials:
    """The credentials token fetch opened lately, kept as long as data keys are (``OpenedCredentials``)."""
    return OpenedCredentials(
        max_entries=OPENED_CREDENTIALS_MEMORY, max_age_seconds=get_settings().data_key_max_age_seconds
    )


def reset() -> None:
    """Forget the sealer (its cached data keys with it), the opened blind-index keys and credentials."""
    get_sealer.cache_clear()
    get_blind_index_keys.cache_clear()
    get_opened_credentials.cache_clear()
    get_kms_client.cache_clear()
