"""The tenant's blind indexes inside one unit of work (``connvault.crypto.blind_index`` has the why).

The key is read from the tenant's row in the caller's own transaction, every time: rows indexed under a key that
the transaction makes commit or roll back together with that key, so no row is ever indexed under a key that
another process cannot read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from connvault.crypto.blind_index import BlindIndexKeys, blind_index
from connvault.db.rows import TenantRow
from connvault.errors import NotFound

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer


class BlindIndexer:
    def __init__(self, session: Session, tenant_id: UUID, sealer: Sealer, keys: BlindIndexKeys) -> None:
        self._session = session
        self._tenant_id = tenant_id
        self._sealer = sealer
        self._keys = keys

    @property
    def tenant_id(self) -> UUID:
        return self._tenant_id

    def index(self, field: str, value: str) -> bytes:
        """The index to store with ``value``; makes the tenant's key on first use."""
        sealed = self._sealed_key()
        if sealed is None:
            sealed = self._store_key(BlindIndexKeys.seal_new(self._sealer, self._tenant_id))
        return blind_index(self._keys.open(self._sealer, self._tenant_id, sealed), field, value)

    def lookup(self, field: str, value: str) -> bytes | None:
        """The index to search ``value`` by, or None when the tenant has no key yet (then nothing is indexed).
        A search never makes a key: reads need no ``kms:GenerateDataKey`` and write nothing."""
        sealed = self._sealed_key()
        if sealed is None:
            return None
        return blind_index(self._keys.open(self._sealer, self._tenant_id, sealed), field, value)

    def _sealed_key(self) -> bytes | None:
        found = self._session.execute(
            select(TenantRow.blind_index_key).where(TenantRow.id == self._tenant_id)
        ).one_or_none()
        if found is None:
            raise NotFound(f"tenant {self._tenant_id} not found")
        return found[0]

    def _store_key(self, candidate: bytes) -> bytes:
        """Store ``candidate`` unless a concurrent transaction stored a key first; answer the key that holds.

        Under READ COMMITTED a second writer waits for the first one's row lock, finds the column set when that
        commits, updates nothing, and reads the winner's key with its next statement."""
        stored: bytes | None = self._session.scalar(
            update(TenantRow)
            .where(TenantRow.id == self._tenant_id, TenantRow.blind_index_key.is_(None))
            .values(blind_index_key=candidate)
            .returning(TenantRow.blind_index_key)
        )
        if stored is not None:
            return stored
        winner = self._sealed_key()
        if winner is None:
            raise NotFound(f"tenant {self._tenant_id} not found")
        return winner
