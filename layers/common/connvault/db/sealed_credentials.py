"""How a connection's credentials are sealed and opened: the one place that knows, for the repository's reads and
writes, the refresh's store, and token fetch's prepared read. Light on purpose (no ORM): token fetch imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connvault.credentials import Credentials, OAuth2Credentials, credentials_from_bytes, credentials_to_bytes
from connvault.crypto.envelope import SealContext

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.crypto.sealer import Sealer

CREDENTIALS_FIELD = "connections.credentials"


def seal_credentials(sealer: Sealer, tenant_id: UUID, connection_id: UUID, credentials: Credentials) -> bytes:
    """A connection's credentials in their envelope, bound to the tenant, the row and the column."""
    return sealer.seal(credentials_to_bytes(credentials), SealContext(tenant_id, CREDENTIALS_FIELD, connection_id))


def open_sealed_credentials(sealer: Sealer, tenant_id: UUID, connection_id: UUID, sealed: bytes) -> Credentials:
    """A connection's credentials from their envelope."""
    return credentials_from_bytes(sealer.open(sealed, SealContext(tenant_id, CREDENTIALS_FIELD, connection_id)))


def holds_refresh_token(credentials: Credentials) -> bool:
    """``has_refresh_token``: whether sealed ``credentials`` renew without the end user (a refresh token, or the
    client or key of a grant that mints tokens), stored beside them so reads and claims need not open them."""
    return isinstance(credentials, OAuth2Credentials) and credentials.renewable


def renews_with_own_client(credentials: Credentials) -> bool:
    """``renews_with_own_client``: whether sealed ``credentials`` renew without the tenant's integration, stored
    beside them so a claim can leave such a connection in when that integration's client was refused."""
    return isinstance(credentials, OAuth2Credentials) and credentials.renews_with_own_client
