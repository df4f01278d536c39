"""``Sealer``: the only crypto API the rest of connvault calls. Seal bytes into an envelope, open it back.

AES-256-GCM with a fresh 96-bit nonce per seal; the associated data binds the envelope to its tenant, row
and field, so a ciphertext copied anywhere else fails to open.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, overload

from cryptography.exceptions import InvalidTag

from connvault.crypto.envelope import NONCE_BYTES, Envelope, SealContext
from connvault.errors import DecryptionFailed
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from uuid import UUID

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from connvault.crypto.data_keys import DataKeys


class Sealer:
    def __init__(self, data_keys: DataKeys) -> None:
        self.data_keys = data_keys

    def seal(self, plaintext: bytes, context: SealContext) -> bytes:
        """Seal under the tenant's current data key, under the configured KMS key. Every write goes through
        here, a refresh's included: each seal counts against the data key's uses, so keys retire everywhere
        (and a refresh during a key rotation never writes under the old KMS key)."""
        key = self.data_keys.for_sealing(context.tenant_id)
        return _sealed(key.aead, key.key_id, key.wrapped, plaintext, context)

    def ready_to_seal(self, tenant_id: UUID) -> None:
        """Make sure the tenant's current data key is at hand, so that a seal made soon after costs no KMS call.
        A refresh calls this before asking the provider: a KMS failure then costs nothing, whereas after a
        rotating provider answered it would put the only live refresh token at risk."""
        self.data_keys.for_sealing(tenant_id)

    def open(self, blob: bytes, context: SealContext) -> bytes:
        envelope = Envelope.from_bytes(blob)
        aead = self.data_keys.for_opening(context.tenant_id, envelope.key_id, envelope.wrapped_key)
        try:
            return aead.decrypt(envelope.nonce, envelope.ciphertext, context.associated_data())
        except InvalidTag:
            raise DecryptionFailed(f"envelope of {context.field} on row {context.row_id} failed to open") from None

    @overload
    def seal_text(self, value: Redacted[str], context: SealContext) -> bytes: ...
    @overload
    def seal_text(self, value: None, context: SealContext) -> None: ...
    def seal_text(self, value: Redacted[str] | None, context: SealContext) -> bytes | None:
        """A secret string (a client secret, a verifier, an account id) in its envelope, as UTF-8; None stays None."""
        return None if value is None else self.seal(value.reveal().encode(), context)

    @overload
    def open_text(self, blob: bytes, context: SealContext) -> Redacted[str]: ...
    @overload
    def open_text(self, blob: None, context: SealContext) -> None: ...
    def open_text(self, blob: bytes | None, context: SealContext) -> Redacted[str] | None:
        """``seal_text``'s secret string back, redacted; None stays None."""
        return None if blob is None else Redacted(self.open(blob, context).decode())

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
