"""Blind indexes: a keyed HMAC of a sealed value, stored beside its envelope, so an exact-match search is an
index lookup that opens no envelope but those of the rows it finds.

Each tenant has its own 32-byte key, random, made on first use and stored only as an envelope (sealed like any
other secret, under the tenant's KMS encryption context) on the tenant's row. Deleting the tenant deletes that
envelope and the key salt it needs, so crypto-shredding covers the indexes as it covers the envelopes. The HMAC
input starts with the field's name, so one value in two fields gives unrelated indexes. What an index still
tells is equality within one tenant and field; docs/security.md says why that is acceptable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING
from uuid import UUID

from connvault.crypto.envelope import SealContext

if TYPE_CHECKING:
    from connvault.crypto.sealer import Sealer

KEY_BYTES = 32
INDEX_BYTES = 32
KEY_FIELD = "tenants.blind_index_key"


def key_context(tenant_id: UUID) -> SealContext:
    """Where the tenant's sealed key lives: its own row and column."""
    return SealContext(tenant_id, KEY_FIELD, tenant_id)


def blind_index(key: bytes, field: str, value: str) -> bytes:
    """HMAC-SHA-256 of ``field`` NUL ``value``: equal only for the same value in the same field under the same key."""
    return hmac.new(key, field.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()


class BlindIndexKeys:
    """The process's opened blind-index keys, by tenant and sealed form, each kept at most ``max_age_seconds``.

    Keyed by the sealed form too, not the tenant alone: a caller always reads the envelope its transaction sees,
    so a key made by a transaction that rolled back can never be served for the one that committed.
    """

    def __init__(
        self, *, max_age_seconds: float = 300, max_cached: int = 1024, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age_seconds
        self._max_cached = max_cached
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: OrderedDict[tuple[UUID, bytes], tuple[bytes, float]] = OrderedDict()

    def open(self, sealer: Sealer, tenant_id: UUID, sealed: bytes) -> bytes:
        """The key in ``sealed``, opened once per ``max_age_seconds`` (KMS only when its data key is not cached)."""
        now = self._monotonic()
        with self._lock:
            hit = self._keys.get((tenant_id, sealed))
            if hit is not None and now - hit[1] < self._max_age:
                return hit[0]
        key = sealer.open(sealed, key_context(tenant_id))
        with self._lock:
            self._keys[(tenant_id, sealed)] = (key, now)
            self._keys.move_to_end((tenant_id, sealed))
            while len(self._keys) > self._max_cached:
                self._keys.popitem(last=False)
        return key

    @staticmethod
    def seal_new(sealer: Sealer, tenant_id: UUID) -> bytes:
        """A new random key, sealed like every other secret (under the tenant's current, counted data key)."""
        return sealer.seal(os.urandom(KEY_BYTES), key_context(tenant_id))

    def forget_tenant(self, tenant_id: UUID) -> None:
        """Drop the tenant's opened keys (its row is gone: nothing may be indexed or found under them again)."""
        with self._lock:
            for cache_key in [k for k in self._keys if k[0] == tenant_id]:
                del self._keys[cache_key]
