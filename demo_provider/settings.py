"""How the demo provider behaves (``DemoSettings``), and the names OAuth gives the methods and grants it speaks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """How the fake provider behaves; every field maps to a real provider's habit."""

    client_id: str = "demo-client"
    client_secret: str | None = "demo-secret"
    """None makes the client public: it sends only ``client_id`` and must use PKCE."""
    token_endpoint_auth_method: str = CLIENT_SECRET_BASIC
    redirect_uris: tuple[str, ...] = ()
    """Registered redirect URIs, matched exactly; empty accepts any (the demo runs on varying ports)."""
    require_pkce: bool = False
    expires_in: int | None = 3600
    """Access-token lifetime; None leaves ``expires_in`` out of responses (GitHub OAuth apps)."""
    issue_refresh_tokens: bool = True
    rotate_refresh_tokens: bool = True
    """With rotation a refresh answers a new refresh token and the old one dies; without, the response
    carries no refresh token and the old one stays valid (Google's habit)."""
    code_ttl_seconds: float = 600.0
    deny_authorization: bool = False
    issuer: str | None = None
    """None means the server's base URL."""
    send_iss: bool = False
    """Add ``iss`` to authorization responses and advertise it in the metadata (RFC 9207)."""
    latency_seconds: float = 0.0
    """Added to every ``/token`` request, to make concurrency and benchmarks realistic."""
    form_encoded: bool = False
    """Answer ``/token`` form-urlencoded (GitHub's legacy default); flat responses only."""
    errors_as_200: bool = False
    """Answer ``/token`` errors with HTTP 200 and an ``error`` field, as GitHub does."""
    nested_authed_user: bool = False
    """Slack v2: ``ok`` flags, and code exchanges put the user's token under ``authed_user``."""
    id_token_subject: str | None = None
    """OpenID Connect: every token answer carries an unsigned ``id_token`` naming this end user as ``sub`` (Google's
    and Microsoft's habit with the ``openid`` scope); changed while running, a refresh answers for another account."""
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    """Merged into every successful token response (e.g. Salesforce's ``instance_url``)."""
    revoke_whole_authorization: bool = False
    """Revoking any token ends every token issued so far (Google: one authorization per client and user, and the
    demo has one user); otherwise a revoked token takes only itself (RFC 7009's reading)."""
    api_keys: tuple[str, ...] = ("dk_demo_0123456789abcdef",)
    """API keys ``GET /api/me`` accepts as a bearer token: the demo API-key provider's keys."""
    api_latency_seconds: float = 0.0
    """Added to every ``/api/`` request (the proxy benchmark's slow upstream)."""
    device_interval_seconds: int = 5
    device_code_ttl_seconds: int = 600
    device_verification_uri_complete: bool = True
    """Offer ``verification_uri_complete`` (Google's device flow does not)."""
