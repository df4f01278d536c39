"""Authorization server metadata: fetch it from a discovery URL and keep only what connvault can trust.

Two documents share one shape: OpenID Connect Discovery 1.0 (``/.well-known/openid-configuration``) and
RFC 8414 authorization server metadata (``/.well-known/oauth-authorization-server``). Both say the document's
``issuer`` must be the issuer its URL was built from; a document naming another issuer is refused, because
accepting it would let one server speak for another (the mix-up attack RFC 9207 closes at the callback).

The fetch goes through ``HttpTransport``: a timeout, no redirects, no retries, and a small body cap. Errors
are ``InvalidInput`` for what the tenant or the server's operator must fix (and naming the metadata member
at fault) and ``ProviderUnavailable`` for what may pass on its own (timeouts, 5xx, 429). No message quotes
the document: it is foreign text and could be anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from connvault.clock import utcnow
from connvault.config import get_settings
from connvault.errors import InvalidInput, ProviderUnavailable
from connvault.models import TokenEndpointAuthMethod
from connvault.oauth.http import HttpTransport
from connvault.oauth.outcomes import parse_retry_after
from connvault.validation import is_unicode_document, require_outbound_url

if TYPE_CHECKING:
    from connvault.oauth.http import HttpResponse

MAX_METADATA_BYTES = 64 * 1024
"""Real metadata documents are a few KiB (Google's about 2, Okta's about 5); anything far larger is not one."""

OIDC_SUFFIX = "/.well-known/openid-configuration"
RFC8414_SUFFIX = "/.well-known/oauth-authorization-server"
_WELL_KNOWN = (OIDC_SUFFIX, RFC8414_SUFFIX)
_DEFAULT_AUTH_METHODS = (TokenEndpointAuthMethod.CLIENT_SECRET_BASIC.value,)
"""RFC 8414 §2: a server that omits ``token_endpoint_auth_methods_supported`` supports client_secret_basic."""
_AUTH_METHOD_PREFERENCE = (TokenEndpointAuthMethod.CLIENT_SECRET_BASIC, TokenEndpointAuthMethod.CLIENT_SECRET_POST)
"""Basic first: the secret stays out of the request body, which servers are likelier to log."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The members of a validated metadata document that a provider definition is built from."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    device_authorization_endpoint: str | None
    """RFC 8628 §4: where a device flow starts; None when the server offers none."""
    token_endpoint_auth_methods: tuple[str, ...]
    code_challenge_methods: tuple[str, ...]
    iss_parameter_supported: bool

    @property
    def pkce(self) -> bool:
        """S256 is the only method connvault sends; ``plain`` alone does not count."""
        return "S256" in self.code_challenge_methods

    def auth_method(self, *, has_client_secret: bool) -> TokenEndpointAuthMethod:
        """How connvault authenticates at the token endpoint: client_secret_basic if offered, else
        client_secret_post.

        A public client (no secret) sends only ``client_id`` whatever the method, so for it the choice does
        not matter and basic is stored. A confidential client at a server offering neither (e.g. only
        ``private_key_jwt``) cannot be served and is refused.
        """
        for method in _AUTH_METHOD_PREFERENCE:
            if method.value in self.token_endpoint_auth_methods:
                return method
        if has_client_secret:
            raise InvalidInput(
                "the discovery metadata offers neither client_secret_basic nor client_secret_post in "
                "token_endpoint_auth_methods_supported; connvault cannot authenticate with a client secret there",
                field="token_endpoint_auth_methods_supported",
            )
        return TokenEndpointAuthMethod.CLIENT_SECRET_BASIC


def issuer_of(discovery_url: str) -> str | None:
    """The issuer a well-known URL was built from, or None for a URL of another form.

    OpenID Connect appends the suffix to the issuer (``https://idp/tenant/.well-known/openid-configuration``);
    RFC 8414 §3.1 inserts it between host and path (``https://idp/.well-known/oauth-authorization-server/tenant``),
    and allows the same insertion for ``openid-configuration`` (§5). A query or fragment never belongs to one.
    """
    parts = urlsplit(discovery_url)
    if parts.query or parts.fragment:
        return None
    path = parts.path
    for suffix in _WELL_KNOWN:
        if path == suffix or path.startswith(suffix + "/"):
            return urlunsplit((parts.scheme, parts.netloc, path[len(suffix) :], "", ""))
    if path.endswith(OIDC_SUFFIX):
        return urlunsplit((parts.scheme, parts.netloc, path[: -len(OIDC_SUFFIX)], "", ""))
    return None


def fetch_metadata(
    discovery_url: str,
    *,
    expected_issuer: str | None = None,
    transport: HttpTransport | None = None,
) -> ProviderMetadata:
    """GET ``discovery_url`` and validate the document.

    ``expected_issuer``, when given, is the issuer the document must name; otherwise it is the issuer the URL
    was derived from (``issuer_of``), and a URL that is not a well-known URL needs one. The URL is checked
    (https, or http on loopback) before any network call.
    Raises ``InvalidInput`` (field ``discovery_url``, ``issuer`` or the metadata member at fault) and
    ``ProviderUnavailable``.
    """
    require_outbound_url(discovery_url, "discovery_url", allow_query=False)
    accepted = _accepted_issuers(discovery_url, expected_issuer)
    own_transport = transport is None
    http = transport or HttpTransport(get_settings().http_timeout_seconds, max_body_bytes=MAX_METADATA_BYTES)
    try:
        response = _get(http, discovery_url)
    finally:
        if own_transport:
            http.close()
    return parse_metadata(_document(response), accepted)


def parse_metadata(document: dict[str, Any], accepted_issuers: tuple[str, ...]) -> ProviderMetadata:
    """Validate a decoded document against the issuers it may name (see ``_accepted_issuers``)."""
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise InvalidInput("the discovery metadata has no issuer", field="issuer")
    if issuer not in accepted_issuers:
        raise InvalidInput(
            "the discovery metadata names an issuer other than the one discovery_url belongs to "
            "(or the issuer given); refusing it",
            field="issuer",
        )
    require_outbound_url(issuer, "issuer", allow_query=False)
    revocation = document.get("revocation_endpoint")
    device = document.get("device_authorization_endpoint")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_endpoint(document, "authorization_endpoint"),
        token_endpoint=_endpoint(document, "token_endpoint"),
        revocation_endpoint=None if revocation is None else _endpoint(document, "revocation_endpoint"),
        device_authorization_endpoint=None if device is None else _endpoint(document, "device_authorization_endpoint"),
        token_endpoint_auth_methods=_strings(document, "token_endpoint_auth_methods_supported", _DEFAULT_AUTH_METHODS),
        code_challenge_methods=_strings(document, "code_challenge_methods_supported", ()),
        iss_parameter_supported=_flag(document, "authorization_response_iss_parameter_supported"),
    )


def _accepted_issuers(discovery_url: str, expected_issuer: str | None) -> tuple[str, ...]:
    """The issuer values a document at ``discovery_url`` may name.

    An issuer ending in ``/`` and the same issuer without it build the same well-known URL (OpenID Connect
    Discovery §4 drops the trailing slash before appending), so a derived issuer admits both spellings. An
    issuer the tenant gave is matched exactly.
    """
    if expected_issuer is not None:
        return (require_outbound_url(expected_issuer, "issuer", allow_query=False),)
    derived = issuer_of(discovery_url)
    if derived is None:
        raise InvalidInput(
            "discovery_url is not a /.well-known/openid-configuration or /.well-known/oauth-authorization-server "
            "URL; give the issuer too",
            field="discovery_url",
        )
    bare = derived.rstrip("/")
    return (bare, bare + "/")


def _get(http: HttpTransport, url: str) -> HttpResponse:
    try:
        response = http.request("GET", url, headers={"Accept": "application/json"})
    except ProviderUnavailable as exc:
        if exc.reason == "response_too_large":
            raise InvalidInput(
                f"the discovery metadata is larger than {MAX_METADATA_BYTES} bytes", field="discovery_url"
            ) from None
        raise
    status = response.status
    if status == 429 or status >= 500:
        raise ProviderUnavailable(
            "discovery_url did not serve the metadata", reason="metadata_unavailable", retry_after=_seconds(response)
        )
    if status != 200:
        # Redirects are not followed: the metadata must be served at the URL the tenant gave. The status is not
        # named: which code a server answered is nobody's business through connvault (no scanning through us).
        raise InvalidInput("discovery_url did not answer 200 with the metadata", field="discovery_url")
    return response


def _document(response: HttpResponse) -> dict[str, Any]:
    try:
        document = json.loads(response.body)
    except (ValueError, RecursionError):  # also UnicodeDecodeError, and nesting deeper than the parser goes
        raise InvalidInput("the discovery metadata is not JSON", field="discovery_url") from None
    if not isinstance(document, dict):
        raise InvalidInput("the discovery metadata is not a JSON object", field="discovery_url")
    if not is_unicode_document(document):  # its URLs and issuer are stored: a lone surrogate cannot be
        raise InvalidInput("the discovery metadata holds a lone UTF-16 surrogate", field="discovery_url")
    return document


def _endpoint(document: dict[str, Any], member: str) -> str:
    value = document.get(member)
    if value is None or value == "":
        raise InvalidInput(f"the discovery metadata has no {member}", field=member)
    if not isinstance(value, str):
        raise InvalidInput(f"the discovery metadata's {member} is not a string", field=member)
    if "{" in value or "}" in value:
        # Stored as a custom provider's endpoint, it would fail every call: the OAuth client sends no URL still
        # holding a placeholder, and a custom provider declares none to fill.
        raise InvalidInput(f"the discovery metadata's {member} holds a placeholder", field=member)
    return require_outbound_url(value, member)


def _strings(document: dict[str, Any], member: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = document.get(member)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"the discovery metadata's {member} is not a list of strings", field=member)
    return tuple(value)


def _flag(document: dict[str, Any], member: str) -> bool:
    value = document.get(member, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"the discovery metadata's {member} is not a boolean", field=member)
    return value


def _seconds(response: HttpResponse) -> float | None:
    """The server's ``Retry-After``, read as every provider's is: finite and capped (``float`` took ``inf``,
    ``nan`` and ``1e999``, which the error answer then could not round: an untyped 500, found by an outside probe)."""
    return parse_retry_after(response.retry_after, utcnow())
