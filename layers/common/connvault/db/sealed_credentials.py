"""How a connection's credentials are sealed and opened: the one place that knows, for the repository's reads and
writes, the refresh's store, and token fetch's prepared read. Light on purpose (no ORM): token fetch imports it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, NamedTuple

from connvault.credentials import Credentials, OAuth2Credentials, credentials_from_bytes, credentials_to_bytes
from connvault.crypto.envelope import SealContext

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from connvault.crypto.sealer import Sealer

CREDENTIALS_FIELD = "connections.credentials"


def seal_credentials(sealer: Sealer, tenant_id: UUID, connection_id: UUID, credentials: Credentials) -> bytes:
    """A connection's credentials in their envelope, bound to the tenant, the row and the column."""
    return sealer.seal(credentials_to_bytes(credentials), SealContext(tenant_id, CREDENTIALS_FIELD, connection_id))


def open_sealed_credentials(sealer: Sealer, tenant_id: UUID, connection_id: UUID, sealed: bytes) -> Credentials:
    """A connection's credentials from their envelope."""
    return credentials_from_bytes(sealer.open(sealed, SealContext(tenant_id, CREDENTIALS_FIELD, connection_id)))


class _Opened(NamedTuple):
    sealer: Sealer
    tenant_id: UUID
    sealed: bytes
    credentials: Credentials
    expires: float


class OpenedCredentials:
    """The credentials token fetch opened lately, one entry per connection, each beside the exact envelope it came
    from: a fetch that reads the same envelope again is handed the same (immutable) credentials without opening it.

    Opening is a quarter of a warm fetch (envelope parse, data-key lookup, AES-GCM, the JSON plaintext into
    credentials), and a backend that fetches before each call to a provider reads the same envelope over and over.
    A hit needs the same sealer, tenant, connection and envelope bytes, read under RLS in this request: every write
    seals anew (a fresh nonce), so a refresh, a rotation or an update is a miss, and a deleted or revoked connection
    is refused by the read before this is asked. An entry lives no longer than a data key stays cached
    (``data_key_max_age_seconds``), so access to the KMS key, once revoked, stops serving within the same bound as
    before. Plaintext credentials stay in the process between requests, as the data keys that open every envelope
    of the tenant already do; at most ``max_entries`` of them."""

    def __init__(
        self, *, max_entries: int, max_age_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: dict[UUID, _Opened] = {}
        self._max_entries = max_entries
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def open(self, sealer: Sealer, tenant_id: UUID, connection_id: UUID, sealed: bytes) -> Credentials:
        """``open_sealed_credentials``, or what it gave for the same envelope lately."""
        now = self._clock()
        entry = self._entries.get(connection_id)
        if (
            entry is not None
            and entry.sealed == sealed
            and entry.tenant_id == tenant_id
            and entry.sealer is sealer
            and now < entry.expires
        ):
            return entry.credentials
        credentials = open_sealed_credentials(sealer, tenant_id, connection_id, sealed)
        with self._lock:
            self._entries.pop(connection_id, None)  # re-inserted last: the oldest entries go first
            self._entries[connection_id] = _Opened(sealer, tenant_id, sealed, credentials, now + self._max_age)
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]
        return credentials


def holds_refresh_token(credentials: Credentials) -> bool:
    """``has_refresh_token``: whether sealed ``credentials`` renew without the end user (a refresh token, or the
    client or key of a grant that mints tokens), stored beside them so reads and claims need not open them."""
    return isinstance(credentials, OAuth2Credentials) and credentials.renewable


def renews_with_own_client(credentials: Credentials) -> bool:
    """``renews_with_own_client``: whether sealed ``credentials`` renew without the tenant's integration, stored
    beside them so a claim can leave such a connection in when that integration's client was refused."""
    return isinstance(credentials, OAuth2Credentials) and credentials.renews_with_own_client
