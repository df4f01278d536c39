"""A connection's status and the rules that follow from it alone: what the token read, the refresh and the
lifecycle code ask of it. Its own module, light on purpose: the authorizer and token fetch read statuses at cold
start and need nothing else of ``models`` (whose dataclasses cost tens of milliseconds to build at import).
``models`` re-exports it."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from connvault.errors import ConnectionRevoked, CredentialsExpired, ReauthRequired

if TYPE_CHECKING:
    from uuid import UUID


class ConnectionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"
    ERROR = "error"
    PARKED = "parked"
    """Its refresh kept failing the same way on connvault's side (``last_error_code`` says how): the scheduler
    leaves it alone. A refresh that works (on fetch) or a reconnect makes it active again."""

    @property
    def serves_unexpired_token(self) -> bool:
        """Whether a token that has not run out may be handed out: ``error`` (refreshes keep failing, the token
        still works) and ``parked`` (the scheduler stopped trying) may, like ``active``."""
        return self in (ConnectionStatus.ACTIVE, ConnectionStatus.ERROR, ConnectionStatus.PARKED)

    @staticmethod
    def after_transient_failures(failures: int, limit: int) -> ConnectionStatus:
        """Where a run of ``failures`` transient refresh failures in a row leaves a connection: ``error`` from
        ``limit`` on (visible, the token still served while valid), else still ``active``."""
        return ConnectionStatus.ERROR if failures >= limit else ConnectionStatus.ACTIVE

    def ensure_servable(
        self, connection_id: UUID, *, has_refresh_token: bool, reason: str | None, refreshing: bool = False
    ) -> None:
        """Raise for a connection that can neither hand out its token nor be refreshed into one: ``needs_reauth``
        (``ReauthRequired``), ``revoked`` (``ConnectionRevoked``), or without a refresh token when ``expired`` or
        about to be ``refreshing`` (``CredentialsExpired``)."""
        if self is ConnectionStatus.NEEDS_REAUTH:
            raise ReauthRequired("the connection needs to be connected again", reason=reason)
        if self is ConnectionStatus.REVOKED:
            raise ConnectionRevoked(f"connection {connection_id} was revoked")
        if not has_refresh_token and (refreshing or self is ConnectionStatus.EXPIRED):
            raise CredentialsExpired(f"connection {connection_id} expired and has no refresh token")


TOKEN_ENDPOINT_MOVED = "token_endpoint_moved"
REVOCATION_ENDPOINT_MOVED = "revocation_endpoint_moved"
_ISSUER_LEFT = frozenset({TOKEN_ENDPOINT_MOVED, REVOCATION_ENDPOINT_MOVED})


def issuer_left(status: ConnectionStatus, reason: str | None) -> bool:
    """Whether the connection's provider now points away from the server that issued its tokens (a custom
    provider's token or revocation endpoint moved to another origin: ``services/custom_providers.py``). Such
    tokens are never sent anywhere again, neither to refresh (the status is ``needs_reauth``) nor to revoke: the
    new server is not the one they belong to. A reconnect makes a grant of the new server's."""
    return status is ConnectionStatus.NEEDS_REAUTH and reason in _ISSUER_LEFT
