"""KMS key rotation: re-wrap every stored data key under a new KMS key, leaving every payload untouched.

Only the envelope header changes (KMS ``ReEncrypt``: the plaintext data key never leaves KMS); the nonce and
ciphertext stay byte for byte what they were, so no secret is decrypted to rotate it. Each distinct data key
costs one ReEncrypt, however many envelopes share it.

Rotating a deployment, in this order:

1. Create the new key and let the functions' role use it (GenerateDataKey, Decrypt, ReEncrypt*), keeping
   the old key's grants.
2. Set ``CONNVAULT_KMS_KEY_ID`` to the new key and deploy. From then on new data keys, and so new envelopes,
   are generated under it (a warm process's cached data key retires within ``data_key_max_age_seconds``).
   ``rewrap_all`` refuses to run while the configured key is still the old one: rotating first would leave
   everything sealed after the run under the key about to be retired.
3. Run ``python -m connvault.services.rotation NEW_KEY_ARN`` with the deployment's environment. It commits
   per batch and is idempotent (envelopes already under the new key cost nothing), so after an interruption
   or a KMS error just run it again.
4. When a run reports ``rewrapped=0`` and ``unreadable=0``, disable the old key; schedule its deletion only
   after backups made before the rotation have expired.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import select, update

from connvault import wiring
from connvault.crypto.blind_index import KEY_FIELD as BLIND_INDEX_KEY_FIELD
from connvault.crypto.envelope import Envelope, SealContext
from connvault.db.accounts import BAAS_ID_FIELD, EXTERNAL_ID_FIELD
from connvault.db.connect_confirmations import GRANT_FIELD
from connvault.db.connections import CREDENTIALS_FIELD, PROVIDER_ACCOUNT_ID_FIELD
from connvault.db.integrations import CLIENT_SECRET_FIELD
from connvault.db.oauth_sessions import VERIFIER_FIELD
from connvault.db.rows import (
    AccountRow,
    ConnectConfirmationRow,
    ConnectionRow,
    IntegrationRow,
    OAuthSessionRow,
    TenantRow,
    WebhookEndpointRow,
)
from connvault.db.uow import UnitOfWork
from connvault.db.webhooks import SECRET_FIELD as WEBHOOK_SECRET_FIELD
from connvault.errors import ConnvaultError, DecryptionFailed, InvalidInput, KeyServiceUnavailable

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.orm import sessionmaker

    from connvault.crypto.sealer import Sealer
    from connvault.db.target import DatabaseTarget


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column holding envelopes, and the field name its envelopes are bound to."""

    row: (
        type[ConnectionRow]
        | type[IntegrationRow]
        | type[OAuthSessionRow]
        | type[WebhookEndpointRow]
        | type[ConnectConfirmationRow]
        | type[AccountRow]
        | type[TenantRow]
    )
    column: str
    field: str


SEALED_COLUMNS = (
    SealedColumn(ConnectionRow, "credentials", CREDENTIALS_FIELD),
    SealedColumn(IntegrationRow, "client_secret", CLIENT_SECRET_FIELD),
    SealedColumn(OAuthSessionRow, "code_verifier", VERIFIER_FIELD),
    SealedColumn(WebhookEndpointRow, "secret", WEBHOOK_SECRET_FIELD),
    SealedColumn(WebhookEndpointRow, "previous_secret", WEBHOOK_SECRET_FIELD),
    SealedColumn(ConnectConfirmationRow, "credentials", GRANT_FIELD),
    SealedColumn(ConnectionRow, "provider_account_id", PROVIDER_ACCOUNT_ID_FIELD),
    SealedColumn(AccountRow, "external_id", EXTERNAL_ID_FIELD),
    SealedColumn(AccountRow, "baas_id", BAAS_ID_FIELD),
    # Bound to the tenant's own row: SealContext(tenant, field, tenant id).
    SealedColumn(TenantRow, "blind_index_key", BLIND_INDEX_KEY_FIELD),
)
"""Every envelope column in the schema; a new one must be added here or rotation leaves it behind."""


@dataclass(frozen=True, slots=True)
class RotationReport:
    tenants: int
    envelopes_rewrapped: int
    envelopes_already_current: int
    envelopes_unreadable: int
    """Envelopes KMS would not re-wrap (corrupt, or their tenant's keys are gone); logged by row id."""
    distinct_data_keys: int
    """Distinct data keys among the re-wrapped envelopes."""
    reencrypt_calls: int


@dataclass(slots=True)
class _Tally:
    rewrapped: int = 0
    current: int = 0
    unreadable: int = 0
    data_keys: int = 0
    reencrypt_calls: int = 0


def rewrap_all(
    new_kms_key_id: str,
    tenant_ids: Iterable[UUID],
    *,
    sealer: Sealer | None = None,
    kms: Any | None = None,
    session_factory: sessionmaker[Any] | None = None,
    batch_size: int = 500,
) -> RotationReport:
    """Re-wrap every envelope of every tenant in ``tenant_ids`` under ``new_kms_key_id``.

    Each tenant is walked under its own ``UnitOfWork`` (RLS in force), one committed transaction per batch
    of ``batch_size`` rows per column, rows locked while they are rewritten so a concurrent refresh is not
    overwritten. Raises ``InvalidInput`` when the new key is unusable or is not the configured sealing key,
    ``KeyServiceUnavailable`` when KMS fails (batches already committed stay done; run again). ``kms``
    (default: the process's client) resolves key ids and aliases to the ARNs that envelopes record.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size must be positive", field="batch_size")
    sealer = sealer or wiring.get_sealer()
    kms = kms or wiring.get_kms_client()
    new_arn = _usable_key_arn(kms, new_kms_key_id)
    if _usable_key_arn(kms, sealer.data_keys.key_id) != new_arn:
        raise InvalidInput(
            "CONNVAULT_KMS_KEY_ID must name the new key before rotating (deploy that first)", field="kms_key_id"
        )
    tally, tenants = _Tally(), 0
    for tenant_id in tenant_ids:
        tenants += 1
        uow = UnitOfWork(tenant_id, sealer=sealer, session_factory=session_factory)
        # Per tenant: data keys are bound to one tenant's context, so the memo never helps across tenants.
        memo: dict[bytes, tuple[str, bytes]] = {}
        rewrapped_keys: set[bytes] = set()
        for sealed in SEALED_COLUMNS:
            _rewrap_column(uow, sealed, new_arn, memo, rewrapped_keys, batch_size, tally)
        tally.data_keys += len(rewrapped_keys)
        tally.reencrypt_calls += len(memo)
    return RotationReport(
        tenants=tenants,
        envelopes_rewrapped=tally.rewrapped,
        envelopes_already_current=tally.current,
        envelopes_unreadable=tally.unreadable,
        distinct_data_keys=tally.data_keys,
        reencrypt_calls=tally.reencrypt_calls,
    )


def _rewrap_column(
    uow: UnitOfWork,
    sealed: SealedColumn,
    new_arn: str,
    memo: dict[bytes, tuple[str, bytes]],
    rewrapped_keys: set[bytes],
    batch_size: int,
    tally: _Tally,
) -> None:
    """Keyset-walk one column of one tenant by id, one committed transaction per batch."""
    from connvault.observability import logger

    row_id, column = sealed.row.id, getattr(sealed.row, sealed.column)
    after: UUID | None = None
    while True:
        with uow:
            query = select(row_id, column).where(column.is_not(None)).order_by(row_id).limit(batch_size)
            if after is not None:
                query = query.where(row_id > after)
            batch = uow.session.execute(query.with_for_update()).all()
            for ident, blob in batch:
                context = SealContext(uow.tenant, sealed.field, ident)
                try:
                    rewrapped = uow.sealer.rewrap(blob, context, new_arn, memo)
                except DecryptionFailed:
                    tally.unreadable += 1
                    logger.warning(
                        "rotation: envelope not re-wrapped",
                        extra={"tenant_id": str(uow.tenant), "field": sealed.field, "row_id": str(ident)},
                    )
                    continue
                if rewrapped == blob:
                    tally.current += 1
                    continue
                rewrapped_keys.add(Envelope.from_bytes(blob).wrapped_key)
                uow.session.execute(update(sealed.row).where(row_id == ident).values({sealed.column: rewrapped}))
                tally.rewrapped += 1
            uow.commit()
        if len(batch) < batch_size:
            return
        after = batch[-1][0]


def _usable_key_arn(kms: Any, key_id: str) -> str:
    """The ARN of an enabled symmetric key (envelopes record ARNs, so comparisons must use them)."""
    try:
        metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        if code in ("NotFoundException", "InvalidArnException", "AccessDeniedException"):
            raise InvalidInput(f"KMS key cannot be used ({code})", field="new_kms_key_id") from None
        raise KeyServiceUnavailable(f"KMS DescribeKey failed ({code})") from None
    except BotoCoreError as exc:
        raise KeyServiceUnavailable(f"KMS DescribeKey failed ({type(exc).__name__})") from None
    # SYMMETRIC_DEFAULT is the only key spec that can generate and wrap data keys (not HMAC, not asymmetric).
    if metadata.get("KeyState") != "Enabled" or metadata.get("KeySpec") != "SYMMETRIC_DEFAULT":
        raise InvalidInput("KMS key is not an enabled encryption key", field="new_kms_key_id")
    return str(metadata["Arn"])


def list_tenant_ids(target: DatabaseTarget | None = None) -> list[UUID]:
    """Every tenant id, read as the schema owner (the one cross-tenant read rotation needs; RLS would show
    the app role none). Adds nothing to the schema: no SECURITY DEFINER function lists tenants."""
    from connvault.db.target import get_target

    connection = (target or get_target()).connect()
    try:
        return [row[0] for row in connection.run("SELECT id FROM tenants ORDER BY id")]
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connvault.services.rotation",
        description="Re-wrap every data key under a new KMS key. Set CONNVAULT_KMS_KEY_ID to it first.",
    )
    parser.add_argument("new_kms_key_id", metavar="NEW_KEY_ARN")
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        report = rewrap_all(args.new_kms_key_id, list_tenant_ids(), batch_size=args.batch_size)
    except ConnvaultError as exc:
        print(f"rotation failed: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"tenants={report.tenants} rewrapped={report.envelopes_rewrapped} "
        f"already_current={report.envelopes_already_current} unreadable={report.envelopes_unreadable} "
        f"data_keys={report.distinct_data_keys} reencrypt_calls={report.reencrypt_calls}"
    )
    return 0 if report.envelopes_unreadable == 0 else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
