"""The one exception family connvault raises.

Every class carries a stable machine ``code`` that the API returns verbatim. Messages name ids,
fields and constraints, never values: a message may be read by the tenant and lands in logs, so it
must never hold a token, code, state, verifier or key.
"""

from __future__ import annotations

from typing import ClassVar


class ConnvaultError(Exception):
    """Base of every error connvault raises on purpose."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip().splitlines()[0]


class InvalidInput(ConnvaultError):
    """The request is malformed or a field fails validation."""

    code = "validation_error"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DiscoveryFailed(InvalidInput):
    """The provider's discovery metadata could not be fetched or cannot be used; the tenant can fix the URL,
    the issuer, or the server it names."""

    code = "discovery_failed"


class CredentialsRefused(InvalidInput):
    """The provider refused the credentials a new connection was made with (a dead refresh token, a client or a
    key it does not accept): nothing was stored. ``field`` names the credential, ``reason`` the provider's code."""

    code = "credentials_refused"

    def __init__(self, message: str = "", *, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class NotFound(ConnvaultError):
    """The resource does not exist, or belongs to another tenant (never said which)."""

    code = "not_found"


class Conflict(ConnvaultError):
    """The write conflicts with existing data (a unique constraint), or with what the stored data allows."""

    code = "conflict"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class QuotaExceeded(Conflict):
    """The tenant holds as many of this resource as its quota allows; delete some, or ask for a larger quota."""

    code = "quota_exceeded"


class Unauthorized(ConnvaultError):
    """The caller's credentials are missing, malformed, unknown or revoked."""

    code = "unauthorized"


class ReauthRequired(ConnvaultError):
    """The provider refused the grant for good; the end user must connect again."""

    code = "needs_reauth"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ClientRejected(ReauthRequired):
    """The provider refused the tenant's app itself (``invalid_client``, ``unauthorized_client``): a fault of the
    integration's credentials, not of any one end user's grant."""

    code = "invalid_client"


class IntegrationCredentialsInvalid(ConnvaultError):
    """The provider refused the integration's client credentials; refreshes wait until the tenant replaces them
    (``PUT /integrations/{provider}`` with a new client secret). Connections keep their grants meanwhile."""

    code = "integration_invalid_credentials"


class IntegrationMissing(IntegrationCredentialsInvalid):
    """The tenant deleted the provider's integration: refreshes wait until it is set up again, as for refused
    credentials. Deleting the tenant's app is not the end users' doing, and their grants stay valid at the provider,
    so their connections keep them rather than needing to be connected again."""

    code = "integration_missing"


class ConnectionRevoked(ConnvaultError):
    """The connection was revoked and can no longer hand out credentials."""

    code = "revoked"


class CredentialsExpired(ConnvaultError):
    """The access token expired and there is no refresh token to renew it."""

    code = "expired"


class GrantSuperseded(Conflict):
    """The end user connected again while a refresh of the previous grant was in flight; the refresh's tokens
    belong to a grant that is no longer the connection's and are not stored."""

    code = "grant_superseded"


class ProviderUnavailable(ConnvaultError):
    """The provider failed in a way worth retrying (5xx, 429, timeout, connection error)."""

    code = "provider_unavailable"

    def __init__(self, message: str = "", *, retry_after: float | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class ProviderRejected(ConnvaultError):
    """The provider refused a request for a reason that retrying will not fix (bad client, bad request)."""

    code = "provider_error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderMisconfigured(ConnvaultError):
    """The provider's definition cannot serve the call (an endpoint holding a placeholder that nothing fills), so
    nothing was sent: neither the caller's input nor the provider is at fault, and retrying as it stands cannot
    help. The tenant corrects its custom provider (``PUT /integrations/{provider}``); for a catalog provider, the
    deployment is at fault."""

    code = "provider_misconfigured"


class ResponseTooLarge(ConnvaultError):
    """The provider's answer is larger than a response connvault can return (Lambda's payload limit); it is
    refused whole rather than cut short."""

    code = "response_too_large"


class RateLimited(ConnvaultError):
    """The tenant sent more requests than its rate allows; ``retry_after`` says when one will be admitted."""

    code = "rate_limited"

    def __init__(self, message: str = "", *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DecryptionFailed(ConnvaultError):
    """An envelope failed authentication: tampered, copied to another row, tenant or field, or shredded."""

    code = "decryption_failed"


class KeyServiceUnavailable(ConnvaultError):
    """KMS throttled or failed; the operation can be retried."""

    code = "key_service_unavailable"


class DatabaseUnavailable(ConnvaultError):
    """The database could not be reached or dropped the connection; the operation can be retried."""

    code = "database_unavailable"


class DatabaseBusy(DatabaseUnavailable):
    """A statement ran past its time or waited too long for a lock; the operation can be retried shortly."""

    code = "database_busy"


class ConfigurationError(ConnvaultError):
    """The deployment is misconfigured (a setting missing, of the wrong type or unusable, a database target that
    cannot work): the operator's to fix, not the caller's. The API answers it as any internal error, 500
    ``internal_error``; the message, which names settings and never their values, goes to the log only."""

    code = "configuration_error"

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        """The setting at fault (``db_port``, ``database_url``)."""


class MigrationError(ConnvaultError):
    """A schema migration could not be applied."""

    code = "migration_failed"
