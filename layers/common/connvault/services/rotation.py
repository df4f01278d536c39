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
4. When a run reports ``left_under_old_keys=0``, disable the old key; schedule its deletion only after
   backups made before the rotation have expired.

Rotation and live traffic do not wait on each other. KMS is called with no transaction open and no row
locked: a batch is read, its data keys re-wrapped, then each row is written back with a compare-and-set
(only if it still holds the envelope that was read). A row a refresh rewrote meanwhile is read again; the
refresh itself sealed under the configured key, so that row is usually current already. The run ends with
a count of every envelope not under the new key, and walks again (up to ``MAX_PASSES``) while writers of
an older deployment still put some back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from connvault import wiring
from connvault.crypto.envelope import Envelope, SealContext
from connvault.db.envelope_columns import SEALED_COLUMNS, EnvelopeColumn, StoredEnvelope
from connvault.db.tenants import list_tenant_ids
from connvault.db.uow import UnitOfWork
from connvault.errors import ConnvaultError, DecryptionFailed, InvalidInput, KeyServiceUnavailable

if TYPE_CHECKING:
    from uuid import UUID

    from mypy_boto3_kms import KMSClient

    from connvault.crypto.sealer import Sealer


MAX_PASSES = 3
"""Walks of the whole data while the final count still finds envelopes under an old key."""

CAS_ATTEMPTS = 3
"""Tries per row whose compare-and-set lost to a concurrent write, before leaving it to the next pass."""


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
    left_under_old_keys: int = 0
    """Envelopes still not under the new key when the run ended (the unreadable ones among them): the old key
    may be disabled only when this is 0."""
    passes: int = 1


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
    kms: KMSClient | None = None,
    batch_size: int = 500,
) -> RotationReport:
    """Re-wrap every envelope of every tenant in ``tenant_ids`` under ``new_kms_key_id``, until none is left
    under another key (or ``MAX_PASSES`` walks).

    Each tenant is walked under its own ``UnitOfWork`` (RLS in force), in batches of ``batch_size`` rows per
    column; KMS is called outside any transaction and rows are written back by compare-and-set, so a
    concurrent refresh is neither overwritten nor blocked. Raises ``InvalidInput`` when the new key is
    unusable or is not the configured sealing key, ``KeyServiceUnavailable`` when KMS fails (batches already
    committed stay done; run again). ``kms`` (default: the process's client) resolves key ids and aliases to
    the ARNs that envelopes record.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size must be positive", field="batch_size")
    sealer = sealer or wiring.get_sealer()
    kms = kms or wiring.get_kms_client()
    new_arn = _usable_key_arn(kms, new_kms_key_id)
    configured = sealer.data_keys.key_id
    if configured is None or _usable_key_arn(kms, configured) != new_arn:
        raise InvalidInput(
            "CONNVAULT_KMS_KEY_ID must name the new key before rotating (deploy that first)", field="kms_key_id"
        )
    tenants = list(tenant_ids)
    units = [UnitOfWork(tenant_id, sealer=sealer) for tenant_id in tenants]
    tally = _Tally()
    passes, left = 0, 0
    while passes < MAX_PASSES:
        passes += 1
        walk = _Tally()
        for uow in units:
            _rewrap_tenant(uow, new_arn, batch_size, walk)
        tally.rewrapped += walk.rewrapped
        tally.data_keys += walk.data_keys
        tally.reencrypt_calls += walk.reencrypt_calls
        if passes == 1:
            tally.current, tally.unreadable = walk.current, walk.unreadable
        left = sum(_count_not_under(uow, new_arn) for uow in units)
        if left <= walk.unreadable:
            break
    return RotationReport(
        tenants=len(tenants),
        envelopes_rewrapped=tally.rewrapped,
        envelopes_already_current=tally.current,
        envelopes_unreadable=tally.unreadable,
        distinct_data_keys=tally.data_keys,
        reencrypt_calls=tally.reencrypt_calls,
        left_under_old_keys=left,
        passes=passes,
    )


def _rewrap_tenant(uow: UnitOfWork, new_arn: str, batch_size: int, tally: _Tally) -> None:
    # Per tenant: data keys are bound to one tenant's context, so the memo never helps across tenants.
    memo: dict[bytes, tuple[str, bytes]] = {}
    rewrapped_keys: set[bytes] = set()
    for column in SEALED_COLUMNS:
        after: UUID | None = None
        while True:
            with uow:
                batch = uow.envelope_columns.batch(column, after=after, limit=batch_size)
            _rewrap_batch(uow, column, batch, new_arn, memo, rewrapped_keys, tally)
            if len(batch) < batch_size:
                break
            after = batch[-1].row_id
    tally.data_keys += len(rewrapped_keys)
    tally.reencrypt_calls += len(memo)


def _rewrap_batch(
    uow: UnitOfWork,
    column: EnvelopeColumn,
    batch: list[StoredEnvelope],
    new_arn: str,
    memo: dict[bytes, tuple[str, bytes]],
    rewrapped_keys: set[bytes],
    tally: _Tally,
) -> None:
    """Re-wrap a batch (KMS, nothing locked), then write it back by compare-and-set in one short transaction;
    rows that changed meanwhile are read and tried again on their own."""
    pending = batch
    for _ in range(CAS_ATTEMPTS):
        writes = []
        for stored in pending:
            rewrapped = _rewrapped(uow, column, stored, new_arn, memo, tally)
            if rewrapped is not None:
                writes.append((stored, rewrapped))
        lost = []
        with uow:
            for stored, rewrapped in writes:
                if uow.envelope_columns.replace(column, stored, rewrapped):
                    rewrapped_keys.add(Envelope.from_bytes(stored.envelope).wrapped_key)
                    tally.rewrapped += 1
                else:
                    lost.append(stored.row_id)
            uow.commit()
        if not lost:
            return
        with uow:
            pending = uow.envelope_columns.current(column, lost)


def _rewrapped(
    uow: UnitOfWork,
    column: EnvelopeColumn,
    stored: StoredEnvelope,
    new_arn: str,
    memo: dict[bytes, tuple[str, bytes]],
    tally: _Tally,
) -> bytes | None:
    """The envelope under ``new_arn``, or None when there is nothing to write (current or unreadable)."""
    from connvault.observability import logger

    blob, context = stored.envelope, SealContext(uow.tenant, column.field, stored.row_id)
    try:
        rewrapped = uow.sealer.rewrap(blob, context, new_arn, memo)
    except DecryptionFailed:
        tally.unreadable += 1
        logger.warning(
            "rotation: envelope not re-wrapped",
            extra={"tenant_id": str(uow.tenant), "field": column.field, "row_id": str(stored.row_id)},
        )
        return None
    if rewrapped == blob:
        tally.current += 1
        return None
    return rewrapped


def _count_not_under(uow: UnitOfWork, new_arn: str) -> int:
    """Envelopes of the tenant whose header names another KMS key (read only: no KMS call)."""
    with uow:
        return uow.envelope_columns.count_not_under(new_arn)


def _usable_key_arn(kms: KMSClient, key_id: str) -> str:
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
        f"data_keys={report.distinct_data_keys} reencrypt_calls={report.reencrypt_calls} "
        f"left_under_old_keys={report.left_under_old_keys} passes={report.passes}"
    )
    return 0 if report.left_under_old_keys == 0 else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
