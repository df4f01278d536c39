"""Every column that holds envelopes, and the reads and writes key rotation makes on them.

Rotation (``services/rotation.py``) re-wraps data keys with KMS while no transaction is open, so what it needs of
the database is a few short statements: a batch of envelopes by row id, read without locking; a compare-and-set
write-back that changes a row only while it still holds the envelope that was read (a refresh that rewrote the row
meanwhile wins); and a count of the envelopes not yet under the new key. Columns, rows and envelopes cross this
module as plain data (table and column names, row ids, bytes), so the service above knows no ORM row and no
SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from connvault.crypto.blind_index import KEY_FIELD as BLIND_INDEX_KEY_FIELD
from connvault.crypto.envelope import Envelope
from connvault.db.accounts import BAAS_ID_FIELD, EXTERNAL_ID_FIELD
from connvault.db.connect_confirmations import ACCOUNT_ID_FIELD as PARKED_ACCOUNT_ID_FIELD
from connvault.db.connect_confirmations import GRANT_FIELD
from connvault.db.connections import PROVIDER_ACCOUNT_ID_FIELD
from connvault.db.device_sessions import CODES_FIELD
from connvault.db.integrations import CLIENT_SECRET_FIELD
from connvault.db.oauth_sessions import VERIFIER_FIELD
from connvault.db.rowcount import rows_changed
from connvault.db.rows import (
    AccountRow,
    ConnectConfirmationRow,
    ConnectionRow,
    DeviceSessionRow,
    IntegrationRow,
    OAuthSessionRow,
    TenantRow,
    WebhookEndpointRow,
)
from connvault.db.sealed_credentials import CREDENTIALS_FIELD
from connvault.db.webhooks import SECRET_FIELD as WEBHOOK_SECRET_FIELD
from connvault.errors import DecryptionFailed

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from sqlalchemy.orm import Session

type _EnvelopeRow = (
    type[ConnectionRow]
    | type[IntegrationRow]
    | type[OAuthSessionRow]
    | type[DeviceSessionRow]
    | type[WebhookEndpointRow]
    | type[ConnectConfirmationRow]
    | type[AccountRow]
    | type[TenantRow]
)

_ROWS: dict[str, _EnvelopeRow] = {
    row.__tablename__: row
    for row in (
        ConnectionRow,
        IntegrationRow,
        OAuthSessionRow,
        DeviceSessionRow,
        WebhookEndpointRow,
        ConnectConfirmationRow,
        AccountRow,
        TenantRow,
    )
}


@dataclass(frozen=True, slots=True)
class EnvelopeColumn:
    """A column holding envelopes, and the field name its envelopes are bound to (their ``SealContext``'s)."""

    table: str
    column: str
    field: str


@dataclass(frozen=True, slots=True)
class StoredEnvelope:
    """One row's envelope in one column, as it was read."""

    row_id: UUID
    envelope: bytes


SEALED_COLUMNS = (
    EnvelopeColumn("connections", "credentials", CREDENTIALS_FIELD),
    EnvelopeColumn("integrations", "client_secret", CLIENT_SECRET_FIELD),
    EnvelopeColumn("oauth_sessions", "code_verifier", VERIFIER_FIELD),
    EnvelopeColumn("webhook_endpoints", "secret", WEBHOOK_SECRET_FIELD),
    EnvelopeColumn("webhook_endpoints", "previous_secret", WEBHOOK_SECRET_FIELD),
    EnvelopeColumn("connect_confirmations", "credentials", GRANT_FIELD),
    EnvelopeColumn("connect_confirmations", "provider_account_id", PARKED_ACCOUNT_ID_FIELD),
    EnvelopeColumn("device_sessions", "codes", CODES_FIELD),
    EnvelopeColumn("connections", "provider_account_id", PROVIDER_ACCOUNT_ID_FIELD),
    EnvelopeColumn("accounts", "external_id", EXTERNAL_ID_FIELD),
    EnvelopeColumn("accounts", "baas_id", BAAS_ID_FIELD),
    # Bound to the tenant's own row: SealContext(tenant, field, tenant id).
    EnvelopeColumn("tenants", "blind_index_key", BLIND_INDEX_KEY_FIELD),
)
"""Every envelope column in the schema; a new one must be added here or rotation leaves it behind (a test
compares this list with the schema's ``bytea`` columns)."""


class EnvelopeColumnRepository:
    """The envelopes of the unit of work's tenant (row-level security decides which rows are seen)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def batch(self, column: EnvelopeColumn, *, after: UUID | None, limit: int) -> list[StoredEnvelope]:
        """The next ``limit`` envelopes of ``column`` by row id, after the row ``after``; no row is locked."""
        row_id, values = _columns(column)
        query = select(row_id, values).where(values.is_not(None)).order_by(row_id).limit(limit)
        if after is not None:
            query = query.where(row_id > after)
        return [StoredEnvelope(ident, blob) for ident, blob in self._session.execute(query)]

    def current(self, column: EnvelopeColumn, row_ids: Sequence[UUID]) -> list[StoredEnvelope]:
        """The envelopes of those rows as they are now; rows deleted or emptied meanwhile drop out."""
        row_id, values = _columns(column)
        query = select(row_id, values).where(row_id.in_(row_ids), values.is_not(None))
        return [StoredEnvelope(ident, blob) for ident, blob in self._session.execute(query)]

    def replace(self, column: EnvelopeColumn, stored: StoredEnvelope, envelope: bytes) -> bool:
        """Write ``envelope`` over ``stored`` only if the row still holds the envelope that was read: a writer
        that changed it meanwhile (a refresh storing new tokens) is never overwritten. False if it was."""
        row = _ROWS[column.table]
        row_id, values = _columns(column)
        statement = (
            update(row).where(row_id == stored.row_id, values == stored.envelope).values({column.column: envelope})
        )
        return rows_changed(self._session, statement) > 0

    def count_not_under(self, kms_key_arn: str) -> int:
        """Envelopes in every sealed column whose header names another KMS key, or that do not parse (read
        only: headers are parsed, no KMS call)."""
        left = 0
        for column in SEALED_COLUMNS:
            _, values = _columns(column)
            for (blob,) in self._session.execute(select(values).where(values.is_not(None))):
                try:
                    left += Envelope.from_bytes(blob).key_id != kms_key_arn
                except DecryptionFailed:
                    left += 1
        return left


def _columns(column: EnvelopeColumn) -> tuple[Any, Any]:
    """The row-id column and the envelope column of ``column``'s table, as SQLAlchemy expressions."""
    row = _ROWS[column.table]
    return row.id, getattr(row, column.column)
