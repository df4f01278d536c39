"""Device connect sessions (RFC 8628): the only place that reads or writes ``device_sessions``.

The device code, the user code and the complete verification URI are sealed in one envelope, opened only to
poll or to show the tenant a pending session; an ended session keeps none of them.

Polls are single flight without a row lock held across the provider call, like refreshes: ``claim_poll`` (one
session, as a tenant asks) and ``claim_due`` (many, across tenants, for the scheduled poller) are a
compare-and-set that takes a short lease *and* moves ``next_poll_at`` one interval ahead, so two polls of one
session never start less than an interval apart, whoever asks. A lease can run out before its poll starts (a
poller thread held up): so the poll renews it, again a compare-and-set, just before it calls the provider
(``renew_lease``), and does not call at all once someone else may have taken the session. The outcome is
recorded only by the lease's owner (``record_wait``, ``finish``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Select, delete, func, or_, select, update

from connvault.crypto.envelope import SealContext
from connvault.db.rowcount import rows_changed
from connvault.db.rows import DeviceSessionRow, ProviderRow
from connvault.errors import DecryptionFailed, NotFound
from connvault.models import DeviceCodes, DeviceSession, DeviceSessionStatus
from connvault.redacted import Redacted

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from sqlalchemy.orm import Session

    from connvault.crypto.sealer import Sealer

CODES_FIELD = "device_sessions.codes"


@dataclass(frozen=True, slots=True)
class PollLease:
    """Proof that this caller, and nobody else, polls the session until ``until``; the session as it was then."""

    session: DeviceSession
    owner: UUID
    until: datetime


@dataclass(frozen=True, slots=True)
class DueSession:
    """A session the poller leased: poll it under its own tenant."""

    session_id: UUID
    tenant_id: UUID
    owner: UUID
    until: datetime


class DeviceSessionRepository:
    def __init__(self, session: Session, sealer: Sealer) -> None:
        self._session = session
        self._sealer = sealer

    def add(self, device: DeviceSession, codes: DeviceCodes) -> None:
        self._session.add(
            DeviceSessionRow(
                id=device.id,
                tenant_id=device.tenant_id,
                provider_id=device.provider_id,
                end_user_id=device.end_user_id,
                alias=device.alias,
                scopes=list(device.scopes),
                codes=self._seal(device.tenant_id, device.id, codes),
                verification_uri=device.verification_uri,
                status=device.status.value,
                interval_seconds=device.interval_seconds,
                next_poll_at=device.next_poll_at,
                expires_at=device.expires_at,
            )
        )
        self._session.flush()

    def get(self, session_id: UUID) -> DeviceSession:
        found = self._session.execute(self._select().where(DeviceSessionRow.id == session_id)).one_or_none()
        if found is None:
            raise NotFound(f"connect session {session_id} not found")
        return self._to_domain(*found)

    def claim_poll(self, session_id: UUID, now: datetime, until: datetime) -> PollLease | None:
        """Lease the session for one poll if it is pending, due (or expired), and nobody polls it now; else None."""
        owner = uuid.uuid4()
        claimed = self._session.execute(
            update(DeviceSessionRow)
            .where(
                DeviceSessionRow.id == session_id,
                DeviceSessionRow.status == DeviceSessionStatus.PENDING.value,
                # Due, or past its expiry: then the "poll" only ends the session, with no provider call.
                or_(DeviceSessionRow.next_poll_at <= now, DeviceSessionRow.expires_at <= now),
                or_(DeviceSessionRow.poll_lease_until.is_(None), DeviceSessionRow.poll_lease_until <= now),
            )
            .values(
                poll_lease_until=until,
                poll_lease_owner=owner,
                next_poll_at=now + func.make_interval(0, 0, 0, 0, 0, 0, DeviceSessionRow.interval_seconds),
            )
            .returning(DeviceSessionRow.id)
        ).one_or_none()
        return None if claimed is None else PollLease(self.get(session_id), owner, until)

    def renew_lease(self, session_id: UUID, owner: UUID, now: datetime, until: datetime) -> bool:
        """Extend the lease to ``until`` if ``owner`` still holds it at ``now``: the last check before the
        provider is called. False: the lease ran out (another caller may have taken the session), so do not poll."""
        changed = rows_changed(
            self._session,
            update(DeviceSessionRow)
            .where(
                DeviceSessionRow.id == session_id,
                DeviceSessionRow.status == DeviceSessionStatus.PENDING.value,
                DeviceSessionRow.poll_lease_owner == owner,
                DeviceSessionRow.poll_lease_until > now,
            )
            .values(poll_lease_until=until),
        )
        return changed > 0

    def lease_from_claim(self, due: DueSession) -> PollLease:
        return PollLease(self.get(due.session_id), due.owner, due.until)

    def claim_due(self, now: datetime, limit: int, until: datetime) -> list[DueSession]:
        """Lease up to ``limit`` pending sessions due for a poll, across tenants (``connvault_claim_device_polls``:
        SECURITY DEFINER, ``FOR UPDATE SKIP LOCKED``, ids only)."""
        owner = uuid.uuid4()
        claimed = func.connvault_claim_device_polls(now, limit, owner, until).table_valued("id", "tenant_id")
        rows = self._session.execute(select(claimed.c.id, claimed.c.tenant_id)).all()
        return [DueSession(row.id, row.tenant_id, owner, until) for row in rows]

    def next_poll_at(self) -> datetime | None:
        """The earliest next poll of any pending session, across tenants (``connvault_next_device_poll``)."""
        return self._session.scalar(select(func.connvault_next_device_poll()))

    def record_wait(
        self, session_id: UUID, owner: UUID, *, interval_seconds: int, next_poll_at: datetime, poll_failures: int
    ) -> bool:
        """A poll that leaves the session pending: when to poll next, at what interval; ends the lease."""
        changed = rows_changed(
            self._session,
            update(DeviceSessionRow)
            .where(DeviceSessionRow.id == session_id, DeviceSessionRow.poll_lease_owner == owner)
            .values(
                interval_seconds=interval_seconds,
                next_poll_at=next_poll_at,
                poll_failures=poll_failures,
                poll_lease_until=None,
                poll_lease_owner=None,
            ),
        )
        return changed > 0

    def finish(
        self,
        session_id: UUID,
        owner: UUID | None,
        status: DeviceSessionStatus,
        *,
        error_code: str | None = None,
        connection_id: UUID | None = None,
    ) -> bool:
        """End a pending session: its codes are dropped. With ``owner``, only while that poll still holds it."""
        query = update(DeviceSessionRow).where(
            DeviceSessionRow.id == session_id, DeviceSessionRow.status == DeviceSessionStatus.PENDING.value
        )
        if owner is not None:
            query = query.where(DeviceSessionRow.poll_lease_owner == owner)
        changed = rows_changed(
            self._session,
            query.values(
                status=status.value,
                error_code=error_code,
                connection_id=connection_id,
                codes=None,
                poll_lease_until=None,
                poll_lease_owner=None,
            ),
        )
        return changed > 0

    def purge_ended(self, before: datetime) -> int:
        """Delete the tenant's sessions that expired before ``before`` (a day ago: GET answers for that long)."""
        changed = rows_changed(self._session, delete(DeviceSessionRow).where(DeviceSessionRow.expires_at < before))
        return changed

    # -- mapping -----------------------------------------------------------------------------------------

    def _select(self) -> Select[DeviceSessionRow, str]:
        return select(DeviceSessionRow, ProviderRow.slug).join(
            ProviderRow, ProviderRow.id == DeviceSessionRow.provider_id
        )

    def _seal(self, tenant_id: UUID, session_id: UUID, codes: DeviceCodes) -> bytes:
        document = {"device_code": codes.device_code.reveal(), "user_code": codes.user_code.reveal()}
        if codes.verification_uri_complete is not None:
            document["verification_uri_complete"] = codes.verification_uri_complete.reveal()
        return self._sealer.seal(json.dumps(document).encode(), SealContext(tenant_id, CODES_FIELD, session_id))

    def _open(self, row: DeviceSessionRow) -> DeviceCodes | None:
        if row.codes is None:
            return None
        plaintext = self._sealer.open(row.codes, SealContext(row.tenant_id, CODES_FIELD, row.id))
        try:
            document = json.loads(plaintext)
            complete = document.get("verification_uri_complete")
            return DeviceCodes(
                device_code=Redacted(document["device_code"]),
                user_code=Redacted(document["user_code"]),
                verification_uri_complete=None if complete is None else Redacted(complete),
            )
        except (ValueError, KeyError, TypeError):
            raise DecryptionFailed("sealed device codes are not readable") from None

    def _to_domain(self, row: DeviceSessionRow, provider_slug: str) -> DeviceSession:
        return DeviceSession(
            id=row.id,
            tenant_id=row.tenant_id,
            provider_id=row.provider_id,
            provider_slug=provider_slug,
            end_user_id=row.end_user_id,
            alias=row.alias,
            scopes=tuple(row.scopes),
            verification_uri=row.verification_uri,
            status=DeviceSessionStatus(row.status),
            interval_seconds=row.interval_seconds,
            next_poll_at=row.next_poll_at,
            poll_failures=row.poll_failures,
            expires_at=row.expires_at,
            connection_id=row.connection_id,
            error_code=row.error_code,
            created_at=row.created_at,
            codes=self._open(row),
        )
