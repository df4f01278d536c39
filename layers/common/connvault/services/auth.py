"""Who is calling: an ``Authorization: Bearer cv_…`` header to a tenant id, or ``Unauthorized``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from connvault import api_keys
from connvault.db.fast_reads import get_fast_reads
from connvault.errors import DatabaseUnavailable, Unauthorized
from connvault.observability import MetricName, logger, metrics

if TYPE_CHECKING:
    from uuid import UUID

    from connvault.db.fast_reads import FastReads

# Compared against when the key id is unknown, so that unknown and wrong keys take the same time.
_DUMMY_DIGEST = api_keys.digest("connvault-unknown-key")


def authenticate(authorization: str | None, *, reads: FastReads | None = None) -> UUID:
    if not authorization:
        raise Unauthorized("missing Authorization header")
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    parsed = api_keys.parse(presented)
    found = (reads or get_fast_reads()).find_api_key(parsed.key_id)
    valid = api_keys.matches(parsed, found.secret_sha256 if found else _DUMMY_DIGEST)
    if found is None or not valid or found.revoked:
        raise Unauthorized("the API key is unknown or revoked")
    return found.tenant_id


@dataclass(frozen=True, slots=True)
class Decision:
    """The authorizer's answer: a tenant, a denial (neither set), or a key that could not be checked."""

    tenant_id: UUID | None = None
    unchecked: bool = False


def authorize(authorization: str | None, *, reads: FastReads | None = None) -> Decision:
    """The authorizer's decision. Denials are counted, never explained to the caller beyond the 403 that API
    Gateway sends (a request without the header gets its 401 earlier).

    When the database is unavailable the key cannot be checked. A Lambda authorizer of an HTTP API can only
    allow, deny (403, which tells a client its key is bad) or fail (500, no ``Retry-After``), so the request
    is let through *without a tenant*, marked unchecked, and the function answers 503 with ``Retry-After``
    before routing: no route runs, and a handler that ignored the mark would still find no tenant (401)."""
    try:
        return Decision(tenant_id=authenticate(authorization, reads=reads))
    except Unauthorized as denied:
        logger.info("request denied", extra={"reason": denied.message})
        metrics.add_metric(name=MetricName.AUTH_DENIED, unit="Count", value=1)
        return Decision()
    except DatabaseUnavailable:
        logger.warning("API key not checked: the database is unavailable")
        metrics.add_metric(name=MetricName.DATABASE_UNAVAILABLE, unit="Count", value=1)
        return Decision(unchecked=True)
