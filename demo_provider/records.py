"""What the demo provider saw and counted, as values for tests to assert on; secrets stay out of every repr."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

type Headers = tuple[tuple[str, str], ...]
"""Extra response headers, in order: ``((name, value), ...)``."""


@dataclass(frozen=True, slots=True)
class AuthorizationRecord:
    """What one ``/authorize`` request asked for, as the provider saw it."""

    params: Mapping[str, str]

    @property
    def state(self) -> str | None:
        return self.params.get("state")

    @property
    def code_challenge(self) -> str | None:
        return self.params.get("code_challenge")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request to the demo API as the provider saw it; the credential stays out of the repr."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Lower-cased names, without the ones that carry credentials (``authorization``, ``x-demo-key``)."""
    body: bytes
    credential_via: str | None
    """``bearer``, ``header``, ``query`` or ``basic``; None when the request carried no credential."""
    credential: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class MachineGrant:
    """One token issued without an end user: to whom, and with which parameters."""

    grant_type: str
    subject: str
    """The client id (client credentials), or the assertion's ``iss`` (JWT bearer)."""
    scope: str
    audience: str | None = None
    resource: str | None = None
    acting_for: str | None = None
    """The assertion's ``sub``, if any (Google's domain-wide delegation)."""
    client_authentication: str | None = None


@dataclass(frozen=True, slots=True)
class DemoStats:
    """A consistent snapshot of the counters, for assertions."""

    token_calls: Mapping[str, int]
    """``/token`` requests by ``grant_type``, faults included."""
    in_flight: int
    max_in_flight: int
    refresh_token_reuse: int
    code_reuse: int
    # Token values stay out of the repr, so a failing assertion does not print them.
    revoked: frozenset[str] = field(repr=False)
    access_tokens: frozenset[str] = field(repr=False)
    """Every access token ever issued."""
    live_refresh_tokens: frozenset[str] = field(repr=False)
    """Refresh tokens that would be accepted now."""
    authorizations: tuple[AuthorizationRecord, ...] = field(repr=False)
    api_calls: tuple[ApiCall, ...] = field(default=(), repr=False)
    machine_grants: tuple[MachineGrant, ...] = ()
    """Every client-credentials and JWT-bearer token issued, with what was asked for."""
    device_polls: Mapping[str, tuple[float, ...]] = field(default_factory=dict, repr=False)
    """Per user code, when (``time.monotonic()``) each poll of its device code arrived."""
    device_polls_too_early: int = 0
