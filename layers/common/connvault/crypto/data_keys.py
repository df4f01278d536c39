"""KMS data keys per tenant, and the in-memory cache that makes warm reads and writes cost 0 KMS calls.

Every data key is generated with the encryption context ``{"tenant_id", "tenant_key_salt"}``. The salt is a
random value stored on the tenant's row: once the tenant is deleted, nobody can name the context any more,
so no envelope of that tenant can be unwrapped again (crypto-shredding); KMS holds no per-tenant state.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connvault.errors import DecryptionFailed, KeyServiceUnavailable, NotFound

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

    from connvault.config import Settings

SaltSource = Callable[[UUID], UUID]
"""Finds a tenant's key salt; raises ``NotFound`` (or any ``ConnvaultError``) for a deleted tenant."""

# KMS answers that mean "this key cannot be unwrapped": wrong context, wrong key, tampered blob, no access.
_UNOPENABLE = frozenset(
    {
        "InvalidCiphertextException",
        "IncorrectKeyException",
        "AccessDeniedException",
        "NotFoundException",
        "DisabledException",
        "KMSInvalidStateException",
        "InvalidKeyUsageException",
    }
)


@dataclass(slots=True)
class _EncryptionKey:
    key_id: str
    wrapped: bytes
    aead: AESGCM
    expires: float
    uses: int = 0


class DataKey(NamedTuple):
    """A usable data key: the AES-GCM primitive plus what goes into the envelope header."""

    key_id: str
    wrapped: bytes
    aead: AESGCM


class _Context(NamedTuple):
    """A tenant's KMS encryption context, and until when what is derived from it may be kept."""

    value: dict[str, str]
    expires: float


class DataKeys:
    """Generates, unwraps and caches data keys. Thread-safe; one per process (see ``sealer.get_sealer``).

    Every seal takes the tenant's current encryption key, which retires after ``max_uses`` seals (bounding how
    many random nonces one key sees, far below AES-GCM's 2^32) or ``max_age`` seconds. Unwrapped keys are kept
    for at most ``max_age`` seconds, ``max_cached_keys`` of them (least recently used first out): sized for
    the distinct data keys a warm process meets, so warm reads make no KMS call (``bench/crypto_bench.py``).

    Crypto-shredding bound: a tenant's salt is kept for ``max_age`` seconds after it was read from the
    database, and every key unwrapped or generated with it expires no later than the salt does. Once a tenant
    is deleted, no process can open or seal its envelopes more than ``max_age`` seconds later.
    """

    def __init__(
        self,
        kms: KMSClient,
        key_id: str | None,
        salts: SaltSource,
        *,
        max_age_seconds: float = 300,
        max_uses: int = 100_000,
        max_cached_keys: int = 16_384,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kms = kms
        self.key_id = key_id
        self._salts = salts
        self._max_age = max_age_seconds
        self._max_uses = max_uses
        self._max_cached = max_cached_keys
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._encryption: dict[UUID, _EncryptionKey] = {}
        # Keyed by (key id, wrapped key), not the wrapped key alone: the envelope's key id is not in the
        # associated data, so a cache hit must not vouch for a key id that KMS never confirmed.
        self._decryption: OrderedDict[tuple[str, bytes], tuple[AESGCM, float]] = OrderedDict()
        self._contexts: dict[UUID, _Context] = {}
        self.generated = 0
        """GenerateDataKey calls made: each is a data key retired and replaced (a figure for tests and bench)."""

    @classmethod
    def from_settings(cls, settings: Settings, kms: KMSClient, salts: SaltSource) -> DataKeys:
        """Without a configured key, envelopes still open (they name their key); only sealing refuses."""
        return cls(
            kms,
            settings.kms_key_id,
            salts,
            max_age_seconds=settings.data_key_max_age_seconds,
            max_uses=settings.data_key_max_uses,
            max_cached_keys=settings.data_key_cache_size,
        )

    def for_sealing(self, tenant_id: UUID) -> DataKey:
        """The tenant's current encryption key, counted; a new one when the cached one is spent or too old."""
        now = self._monotonic()
        with self._lock:
            key = self._encryption.get(tenant_id)
            if key is not None and now < key.expires and key.uses < self._max_uses:
                key.uses += 1
                return DataKey(key.key_id, key.wrapped, key.aead)
        if not self.key_id:
            raise KeyServiceUnavailable("CONNVAULT_KMS_KEY_ID is not set")
        context, key_id = self._context(tenant_id, now), self.key_id
        answer = _call(
            "generate_data_key",
            lambda: self._kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context.value),
        )
        aead = AESGCM(answer["Plaintext"])
        expires = min(now + self._max_age, context.expires)
        fresh = _EncryptionKey(answer["KeyId"], answer["CiphertextBlob"], aead, expires, uses=1)
        with self._lock:
            self.generated += 1
            self._encryption[tenant_id] = fresh
            self._remember((fresh.key_id, fresh.wrapped), aead, expires)
        return DataKey(fresh.key_id, fresh.wrapped, aead)

    def for_opening(self, tenant_id: UUID, key_id: str, wrapped: bytes) -> AESGCM:
        """The key that opens an envelope; unwrapped by KMS once, then served from memory.

        KMS must confirm the envelope's key id: the header is outside the associated data (rotation rewrites
        it), so this check is what makes a tampered key id fail instead of opening under a false label.
        """
        now = self._monotonic()
        cache_key = (key_id, wrapped)
        with self._lock:
            hit = self._decryption.get(cache_key)
            if hit is not None and now < hit[1]:
                self._decryption.move_to_end(cache_key)
                return hit[0]
        context = self._context(tenant_id, now)
        answer = _call(
            "decrypt",
            lambda: self._kms.decrypt(CiphertextBlob=wrapped, KeyId=key_id, EncryptionContext=context.value),
        )
        if answer.get("KeyId") != key_id:
            raise DecryptionFailed("the envelope's key id is not the key that wrapped its data key")
        aead = AESGCM(answer["Plaintext"])
        with self._lock:
            self._remember(cache_key, aead, min(now + self._max_age, context.expires))
        return aead

    def rewrap(self, tenant_id: UUID, key_id: str, wrapped: bytes, new_key_id: str) -> tuple[str, bytes]:
        """Re-encrypt a wrapped data key under another KMS key; the plaintext key never leaves KMS."""
        context = self._context(tenant_id, self._monotonic()).value
        answer = _call(
            "re_encrypt",
            lambda: self._kms.re_encrypt(
                CiphertextBlob=wrapped,
                SourceKeyId=key_id,
                SourceEncryptionContext=context,
                DestinationKeyId=new_key_id,
                DestinationEncryptionContext=context,
            ),
        )
        return answer["KeyId"], answer["CiphertextBlob"]

    def forget_tenant(self, tenant_id: UUID) -> None:
        """Drop everything cached for a tenant (called when the tenant is deleted)."""
        with self._lock:
            self._encryption.pop(tenant_id, None)
            self._contexts.pop(tenant_id, None)
            self._decryption.clear()

    def _context(self, tenant_id: UUID, now: float) -> _Context:
        with self._lock:
            context = self._contexts.get(tenant_id)
        if context is not None and now < context.expires:
            return context
        try:
            salt = self._salts(tenant_id)
        except NotFound:
            raise DecryptionFailed("the tenant's keys are gone") from None
        context = _Context({"tenant_id": str(tenant_id), "tenant_key_salt": str(salt)}, now + self._max_age)
        with self._lock:
            self._contexts[tenant_id] = context
        return context

    def _remember(self, cache_key: tuple[str, bytes], aead: AESGCM, expires: float) -> None:
        self._decryption[cache_key] = (aead, expires)
        self._decryption.move_to_end(cache_key)
        while len(self._decryption) > self._max_cached:
            self._decryption.popitem(last=False)


def _call[T](operation: str, call: Callable[[], T]) -> T:
    """``call()`` (one KMS operation), its failures translated; messages carry the operation and AWS error code
    only."""
    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        if code in _UNOPENABLE:
            raise DecryptionFailed(f"KMS {operation} refused the data key ({code})") from None
        raise KeyServiceUnavailable(f"KMS {operation} failed ({code})") from None
    except BotoCoreError as exc:
        raise KeyServiceUnavailable(f"KMS {operation} failed ({type(exc).__name__})") from None
