"""``Sealer``: the only crypto API the rest of connvault calls. Seal bytes into an envelope, open it back.

AES-256-GCM with a fresh 96-bit nonce per seal; the associated data binds the envelope to its tenant, row
and field, so a ciphertext copied anywhere else fails to open.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from connvault.crypto.envelope import NONCE_BYTES, Envelope, SealContext
from connvault.errors import DecryptionFailed

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from connvault.crypto.data_keys import DataKeys


class Sealer:
    def __init__(self, data_keys: DataKeys) -> None:
        self.data_keys = data_keys

    def seal(self, plaintext: bytes, context: SealContext) -> bytes:
        key = self.data_keys.for_sealing(context.tenant_id)
        return _sealed(key.aead, key.key_id, key.wrapped, plaintext, context)

    def reseal(self, plaintext: bytes, context: SealContext, previous: bytes) -> bytes:
        """Seal under the data key of ``previous``, the envelope being replaced, with a fresh nonce.

        Refreshing a token rewrites its envelope many times over the connection's life; reusing the data key
        that already protects the row means the writer needs only ``kms:Decrypt`` (token fetch, the most
        exposed function, can never mint data keys), and the key is already in the cache.
        """
        envelope = Envelope.from_bytes(previous)
        aead = self.data_keys.for_opening(context.tenant_id, envelope.key_id, envelope.wrapped_key)
        return _sealed(aead, envelope.key_id, envelope.wrapped_key, plaintext, context)

    def open(self, blob: bytes, context: SealContext) -> bytes:
        envelope = Envelope.from_bytes(blob)
        aead = self.data_keys.for_opening(context.tenant_id, envelope.key_id, envelope.wrapped_key)
        try:
            return aead.decrypt(envelope.nonce, envelope.ciphertext, context.associated_data())
        except InvalidTag:
            raise DecryptionFailed(f"envelope of {context.field} on row {context.row_id} failed to open") from None

    def rewrap(self, blob: bytes, context: SealContext, new_key_id: str, memo: dict[bytes, tuple[str, bytes]]) -> bytes:
        """The same envelope with its data key wrapped under ``new_key_id``; the payload is untouched.

        ``memo`` maps old wrapped keys to new ones, so each distinct data key costs one ReEncrypt.
        """
        envelope = Envelope.from_bytes(blob)
        if envelope.key_id == new_key_id:
            return blob
        if envelope.wrapped_key not in memo:
            memo[envelope.wrapped_key] = self.data_keys.rewrap(
                context.tenant_id, envelope.key_id, envelope.wrapped_key, new_key_id
            )
        key_id, wrapped = memo[envelope.wrapped_key]
        return Envelope(key_id, wrapped, envelope.nonce, envelope.ciphertext).to_bytes()


def _sealed(aead: AESGCM, key_id: str, wrapped: bytes, plaintext: bytes, context: SealContext) -> bytes:
    """One envelope: a fresh 96-bit nonce for every seal, the context as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return Envelope(key_id, wrapped, nonce, aead.encrypt(nonce, plaintext, context.associated_data())).to_bytes()
