"""A fake OAuth 2 provider on a real local HTTP server, for the tests and for ``make run``.

It implements just enough of RFC 6749, 7636 (PKCE S256), 7009 (revocation), 8414 (metadata), 9207
(``iss``) and 7523 (JWT assertions) to exercise connvault end to end over real sockets:

* ``GET /authorize`` approves at once and redirects to the client with ``code`` and ``state`` (or
  ``error=access_denied`` with ``?deny=1`` or ``deny_authorization``), so a browser or a test that
  follows the redirect gets a code without a login page.
* ``POST /token`` serves ``authorization_code`` (single-use codes, exact ``redirect_uri``, PKCE) and
  ``refresh_token`` (with or without rotation). Presenting an already-rotated refresh token is counted
  as ``refresh_token_reuse``: a race in the vault's refresh logic shows up there.
* ``POST /token`` also serves ``client_credentials`` (RFC 6749 §4.4) for the configured client and for
  clients added with ``add_client`` (a secret, or a public key for ``private_key_jwt``, RFC 7523 §2.2), and
  the JWT-bearer grant (RFC 7523 §2.1) for service accounts added with ``add_service_account``: the
  assertion's signature (RS256, ES256), ``iss``, ``aud``, ``exp`` and ``iat`` are checked as a real server
  does, and ``machine_grants`` in ``stats()`` records what each such request asked for. A client
  assertion's ``jti`` works once.
* ``POST /device_authorization`` starts a device flow (RFC 8628): a device code, a user code and
  ``/device`` to enter it at, where ``GET /device?user_code=...`` approves at once (``&deny=1`` denies), as
  ``approve_device`` and ``deny_device`` do for tests. Polls of ``/token`` with the device code answer
  ``authorization_pending``, ``slow_down`` (a poll sooner than the interval since the last one, which also adds
  five seconds to it, as RFC 8628 §3.5 says; counted as ``device_polls_too_early``), ``access_denied``,
  ``expired_token``, or the tokens, once.
* ``POST /revoke`` records revoked tokens (with ``revoke_whole_authorization``, every token issued so far); a
  revoked refresh token then gets ``invalid_grant``.
* ``GET /userinfo`` accepts a live access token, so the demo can show a token works.
* ``GET /.well-known/openid-configuration`` and ``/.well-known/oauth-authorization-server``.
* An API under ``/api/`` for the proxy: ``GET /api/me``, ``GET /api/items`` (paginated, with a ``Link``
  header), ``/api/echo`` (any method: what the request looked like, credentials left out) and
  ``GET /api/bytes?size=N``. It takes a live access token, one of ``DemoSettings.api_keys`` (the demo API-key
  provider's, whose credential check the connect page calls on ``/api/me``) or a key given to ``add_api_key``
  (a username and password to ``add_basic_user``) as a bearer token, in ``X-Demo-Key``, as ``?api_key=`` or as
  HTTP Basic, answers 401 with ``WWW-Authenticate`` otherwise, and records every call (``stats().api_calls``).
* ``POST /demo/expire-access-tokens`` makes every access token issued so far stale (the next API call with one
  gets a 401), and ``GET /demo/stats`` shows the counters (no tokens): knobs for trying ``make run``.

Realism knobs live in ``DemoSettings`` (changed at runtime with ``configure``); scripted failures
(``Fault``) are queued per path with ``inject`` and consumed one per request; ``stats()`` returns a
snapshot of the counters. Nothing is logged: requests carry codes, states and tokens.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

CLIENT_SECRET_BASIC = "client_secret_basic"
_API_ITEMS = 45
"""How many items ``GET /api/items`` pages through."""
_MAX_API_BODY_BYTES = 8 * 1024 * 1024
_INVALID_TOKEN = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
_HEADERS_A_PROXY_MUST_DROP = (
    ("Set-Cookie", "demo_session=1; HttpOnly"),
    ("Connection", "X-Demo-Hop"),
    ("X-Demo-Hop", "1"),
    ("Strict-Transport-Security", "max-age=63072000"),
    ("X-RateLimit-Remaining", "99"),
)
"""On ``/api/echo``: cookies, a hop-by-hop header (named by ``Connection``), HSTS, and one that may cross."""
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_SECONDS = 3600
CLOCK_SKEW_SECONDS = 60
_MAX_REQUEST_BYTES = 64 * 1024


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


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer, consumed by the next request to the path it was injected for.

    ``status=None`` means "answer normally", after ``delay_seconds``.
    """

    status: int | None = None
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delay_seconds: float = 0.0
    drop_connection: bool = False

    @classmethod
    def error(cls, status: int, code: str, headers: tuple[tuple[str, str], ...] = ()) -> Fault:
        return cls(status=status, body=json.dumps({"error": code}).encode(), headers=headers)

    @classmethod
    def server_error(cls) -> Fault:
        return cls(status=500, body=b'{"error": "server_error"}')

    @classmethod
    def rate_limited(cls, retry_after: str) -> Fault:
        return cls(status=429, body=b'{"error": "rate_limited"}', headers=(("Retry-After", retry_after),))

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(delay_seconds=seconds)

    @classmethod
    def dropped(cls) -> Fault:
        return cls(drop_connection=True)

    @classmethod
    def garbage(cls) -> Fault:
        return cls(status=200, body=b"<html>\x00\xff upstream exploded", content_type="text/html")


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
class _Client:
    """A client other than the configured one: a secret (basic or post), or a public key (private_key_jwt)."""

    secret: str | None = None
    public_key: Any = None


@dataclass(frozen=True, slots=True)
class _ServiceAccount:
    public_key: Any
    key_id: str | None


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


@dataclass(slots=True)
class _Grant:
    redirect_uri: str
    scope: str
    code_challenge: str | None
    expires_at: float


@dataclass(slots=True)
class _DeviceGrant:
    user_code: str
    scope: str
    client_id: str
    expires_at: float
    interval: int
    state: str = "pending"
    """pending, approved, denied, or issued (the tokens went out: the device code is spent)."""
    last_poll: float | None = None


@dataclass(slots=True)
class _RefreshToken:
    scope: str
    rotated: bool = False


class _TokenError(Exception):
    """An OAuth error answer (RFC 6749 §5.2) raised inside the token logic."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


class DemoProvider:
    """The server and its state; thread-safe, one lock around every piece of state."""

    def __init__(self, settings: DemoSettings | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._settings = settings or DemoSettings()
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._faults: dict[str, deque[Fault]] = {}
        self._grants: dict[str, _Grant] = {}
        self._used_codes: set[str] = set()
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._revoked: set[str] = set()
        self._authorizations: list[AuthorizationRecord] = []
        self._api_calls: list[ApiCall] = []
        self._api_keys: set[str] = set()
        self._basic_users: set[tuple[str, str]] = set()
        self._token_calls: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0
        self._refresh_token_reuse = 0
        self._code_reuse = 0
        self._clients: dict[str, _Client] = {}
        self._service_accounts: dict[str, _ServiceAccount] = {}
        self._machine_grants: list[MachineGrant] = []
        self._used_jtis: set[str] = set()
        self._device_grants: dict[str, _DeviceGrant] = {}
        self._device_polls: dict[str, list[float]] = {}
        self._device_polls_too_early = 0

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> DemoProvider:
        self._stopping.clear()
        self._server = _Server(self._address, _Handler, self)
        self._thread = threading.Thread(
            # A short poll interval: stop() waits up to one interval, once per test.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="demo-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests sleeping in a delay wake up and give up."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> DemoProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the demo provider is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def issuer(self) -> str:
        return self.settings.issuer or self.base_url

    # knobs and counters ------------------------------------------------------------------------

    @property
    def settings(self) -> DemoSettings:
        with self._lock:
            return self._settings

    def configure(self, **changes: Any) -> None:
        """Change settings while running; requests already in progress keep the old ones."""
        with self._lock:
            self._settings = replace(self._settings, **changes)

    def inject(self, *faults: Fault, path: str = "/token") -> None:
        """Queue scripted answers for the next requests to ``path``, in order."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def add_client(self, client_id: str, *, secret: str | None = None, public_key_pem: str | None = None) -> None:
        """Accept another client: with ``secret`` (basic or post) or a public key (``private_key_jwt``)."""
        key = None if public_key_pem is None else serialization.load_pem_public_key(public_key_pem.encode())
        with self._lock:
            self._clients[client_id] = _Client(secret, key)

    def remove_client(self, client_id: str) -> None:
        """The client is deleted at the provider: its next request is ``invalid_client``."""
        with self._lock:
            self._clients.pop(client_id, None)

    def add_service_account(self, issuer: str, public_key_pem: str, *, key_id: str | None = None) -> None:
        """Accept JWT-bearer assertions whose ``iss`` is ``issuer``, signed by the key of ``public_key_pem``."""
        key = serialization.load_pem_public_key(public_key_pem.encode())
        with self._lock:
            self._service_accounts[issuer] = _ServiceAccount(key, key_id)

    def approve_device(self, user_code: str) -> bool:
        """The end user entered ``user_code`` and approved; False for an unknown code."""
        return self._decide_device(user_code, "approved")

    def deny_device(self, user_code: str) -> bool:
        return self._decide_device(user_code, "denied")

    def _decide_device(self, user_code: str, decision: str) -> bool:
        with self._lock:
            for grant in self._device_grants.values():
                if grant.user_code == user_code and grant.state == "pending":
                    grant.state = decision
                    return True
        return False

    def device_authorization(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """RFC 8628 §3.1-3.2: a device code for the client, and a user code for the end user."""
        settings = self.settings
        client_id, _ = self._authenticate_any_client(settings, form, authorization)
        device_code = "dc_" + secrets.token_urlsafe(24)
        alphabet = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes
        letters = "".join(secrets.choice(alphabet) for _ in range(8))
        user_code = f"{letters[:4]}-{letters[4:]}"
        grant = _DeviceGrant(
            user_code,
            form.get("scope", ""),
            client_id,
            time.monotonic() + settings.device_code_ttl_seconds,
            settings.device_interval_seconds,
        )
        with self._lock:
            self._device_grants[device_code] = grant
        base = self.base_url
        document = {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": f"{base}/device",
            "expires_in": settings.device_code_ttl_seconds,
            "interval": settings.device_interval_seconds,
        }
        if settings.device_verification_uri_complete:
            document["verification_uri_complete"] = f"{base}/device?user_code={user_code}"
        return document

    def _poll_device(self, settings: DemoSettings, form: Mapping[str, str], client_id: str) -> dict[str, Any]:
        """RFC 8628 §3.4-3.5, as a server keeps a device code's state."""
        now = time.monotonic()
        with self._lock:
            grant = self._device_grants.get(form.get("device_code", ""))
            if grant is None or grant.client_id != client_id or grant.state == "issued":
                raise _TokenError("invalid_grant")
            self._device_polls.setdefault(grant.user_code, []).append(now)
            early = grant.last_poll is not None and now - grant.last_poll < grant.interval
            grant.last_poll = now
            if grant.expires_at <= now:
                raise _TokenError("expired_token")
            if early:
                self._device_polls_too_early += 1
                grant.interval += 5
                raise _TokenError("slow_down")
            if grant.state == "denied":
                raise _TokenError("access_denied")
            if grant.state == "pending":
                raise _TokenError("authorization_pending")
            grant.state = "issued"
        return self._issue(settings, grant.scope, with_refresh_token=settings.issue_refresh_tokens)

    def remove_service_account(self, issuer: str) -> None:
        """The key is deleted (as in Google's console): the next assertion is ``invalid_grant``."""
        with self._lock:
            self._service_accounts.pop(issuer, None)

    def stats(self) -> DemoStats:
        with self._lock:
            return DemoStats(
                token_calls=dict(self._token_calls),
                in_flight=self._in_flight,
                max_in_flight=self._max_in_flight,
                refresh_token_reuse=self._refresh_token_reuse,
                code_reuse=self._code_reuse,
                revoked=frozenset(self._revoked),
                access_tokens=frozenset(self._access_tokens),
                live_refresh_tokens=frozenset(
                    token
                    for token, record in self._refresh_tokens.items()
                    if not record.rotated and token not in self._revoked
                ),
                authorizations=tuple(self._authorizations),
                api_calls=tuple(self._api_calls),
                machine_grants=tuple(self._machine_grants),
                device_polls={code: tuple(times) for code, times in self._device_polls.items()},
                device_polls_too_early=self._device_polls_too_early,
            )

    def access_token_is_active(self, token: str) -> bool:
        with self._lock:
            return self._access_token_is_active(token)

    def add_api_key(self, key: str) -> None:
        """A static key the demo API takes, as an API-key provider's would."""
        with self._lock:
            self._api_keys.add(key)

    def add_basic_user(self, username: str, password: str) -> None:
        """A username and password the demo API takes over HTTP Basic."""
        with self._lock:
            self._basic_users.add((username, password))

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working at the API, as a provider revoking them early would."""
        with self._lock:
            self._access_tokens = dict.fromkeys(self._access_tokens, 0.0)

    def api(self, call: ApiCall) -> tuple[int, dict[str, Any] | bytes, _Headers]:
        """The demo API's answer to one call: ``(status, JSON document or raw bytes, extra headers)``."""
        with self._lock:
            self._api_calls.append(call)
            allowed = call.credential is not None and self._api_credential_ok(call.credential_via, call.credential)
        if not allowed:
            return HTTPStatus.UNAUTHORIZED, {"error": "invalid_token"}, _INVALID_TOKEN
        params = dict(parse_qsl(call.query, keep_blank_values=True))
        if call.path == "/api/me" and call.method in ("GET", "HEAD"):
            return HTTPStatus.OK, self._owner(call.credential or ""), ()
        if call.path == "/api/items" and call.method in ("GET", "HEAD"):
            return self._items(params)
        if call.path == "/api/echo":
            echoed = {
                "method": call.method,
                "path": call.path,
                "query": call.query,
                "headers": dict(call.headers),
                "body": call.body.decode("utf-8", "replace"),
            }
            return HTTPStatus.OK, echoed, _HEADERS_A_PROXY_MUST_DROP
        if call.path == "/api/bytes" and call.method == "GET" and params.get("size", "").isdigit():
            return HTTPStatus.OK, b"x" * int(params["size"]), ()
        return HTTPStatus.NOT_FOUND, {"error": "not_found"}, ()

    def _items(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any], _Headers]:
        """Items 1..``_API_ITEMS``, ``per_page`` (at most 50) at a time, with RFC 8288 ``next``/``prev`` links to
        the provider's own URLs, as GitHub gives them."""
        try:
            page, per_page = int(params.get("page", "1")), min(int(params.get("per_page", "10")), 50)
        except ValueError:
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_request"}, ()
        if page < 1 or per_page < 1:
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_request"}, ()
        first = (page - 1) * per_page
        items = [{"id": n, "name": f"Item {n}"} for n in range(first + 1, min(first + per_page, _API_ITEMS) + 1)]
        links, url = [], f"{self.base_url}/api/items?per_page={per_page}&page="
        if first + per_page < _API_ITEMS:
            links.append(f'<{url}{page + 1}>; rel="next"')
        if page > 1:
            links.append(f'<{url}{page - 1}>; rel="prev"')
        document = {"items": items, "page": page, "next_page": page + 1 if first + per_page < _API_ITEMS else None}
        return HTTPStatus.OK, document, (("Link", ", ".join(links)),) if links else ()

    def _owner(self, credential: str) -> dict[str, Any]:
        """Who the credential belongs to: the demo account for a static key, the demo user for a token."""
        if self._access_token_is_active(credential):
            return {"sub": "demo-user", "name": "Demo User"}
        with self._lock:
            self._token_calls["api_key_check"] += 1
        return {"id": "demo-account", "name": "Demo account"}

    def _api_credential_ok(self, via: str | None, credential: str) -> bool:
        if via == "basic":
            username, _, password = credential.partition(":")
            return (username, password) in self._basic_users or (username in self._api_keys and not password)
        known = credential in self._api_keys or any(
            secrets.compare_digest(credential, key) for key in self._settings.api_keys
        )
        return known or self._access_token_is_active(credential)

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata (also served as OpenID configuration)."""
        settings, base = self.settings, self.base_url
        auth_method = settings.token_endpoint_auth_method if settings.client_secret is not None else "none"
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "revocation_endpoint": f"{base}/revoke",
            "device_authorization_endpoint": f"{base}/device_authorization",
            "userinfo_endpoint": f"{base}/userinfo",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", JWT_BEARER],
            "token_endpoint_auth_methods_supported": [auth_method],
            "revocation_endpoint_auth_methods_supported": [auth_method],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": settings.send_iss,
        }

    # endpoint logic, called by the handler -------------------------------------------------------

    def authorize(self, params: Mapping[str, str]) -> tuple[int, str]:
        """``(status, location-or-message)``: a redirect, or a 400 when the redirect target is not trusted."""
        settings = self.settings
        redirect_uri = params.get("redirect_uri", "")
        if params.get("client_id") != settings.client_id:
            return HTTPStatus.BAD_REQUEST, "unknown client_id"
        if not redirect_uri or (settings.redirect_uris and redirect_uri not in settings.redirect_uris):
            return HTTPStatus.BAD_REQUEST, "redirect_uri is not registered"
        with self._lock:
            self._authorizations.append(AuthorizationRecord(dict(params)))
        answer = {"state": params["state"]} if "state" in params else {}
        if settings.send_iss:
            answer["iss"] = self.issuer
        challenge = params.get("code_challenge")
        pkce_ok = (
            params.get("code_challenge_method") == "S256"
            if challenge is not None
            else not (settings.require_pkce or settings.client_secret is None)
        )
        if settings.deny_authorization or params.get("deny") == "1":
            answer["error"] = "access_denied"
        elif params.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif not pkce_ok:
            answer["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(24)
            grant = _Grant(
                redirect_uri, params.get("scope", ""), challenge, time.monotonic() + settings.code_ttl_seconds
            )
            with self._lock:
                self._grants[code] = grant
            answer["code"] = code
        return HTTPStatus.FOUND, _with_query(redirect_uri, answer)

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """The success document for a token request; raises ``_TokenError`` for an OAuth error."""
        settings = self.settings
        grant_type = form.get("grant_type")
        if grant_type == JWT_BEARER:
            return self._jwt_bearer(settings, form)  # the assertion is the credential: no client authentication
        client_id, method = self._authenticate_any_client(settings, form, authorization)
        if grant_type == "client_credentials":
            return self._client_credentials(settings, form, client_id, method)
        if grant_type == DEVICE_CODE:
            return self._poll_device(settings, form, client_id)
        if client_id != settings.client_id:
            raise _TokenError("unauthorized_client")
        if grant_type == "authorization_code":
            return self._exchange_code(settings, form)
        if grant_type == "refresh_token":
            return self._refresh(settings, form)
        raise _TokenError("unsupported_grant_type")

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009: unknown tokens are fine; the client must still authenticate."""
        self._authenticate_any_client(self.settings, form, authorization)
        token = form.get("token")
        if not token:
            raise _TokenError("invalid_request")
        with self._lock:
            self._revoked.add(token)
            if self._settings.revoke_whole_authorization:
                self._revoked.update(self._access_tokens, self._refresh_tokens)

    def userinfo(self, authorization: str | None) -> dict[str, Any] | None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not self.access_token_is_active(token):
            return None
        return {"sub": "demo-user", "name": "Demo User"}

    def _authenticate_any_client(
        self, settings: DemoSettings, form: Mapping[str, str], authorization: str | None
    ) -> tuple[str, str]:
        """``(client_id, method)`` of an authenticated client: the configured one, or one added with
        ``add_client``; anything else is ``invalid_client``."""
        if "client_assertion" in form or "client_assertion_type" in form:
            return self._verify_client_assertion(form, authorization), PRIVATE_KEY_JWT
        presented_id = form.get("client_id") or _basic_credentials(authorization)[0]
        with self._lock:
            extra = self._clients.get(presented_id) if presented_id else None
        if extra is None or extra.secret is None:
            self._authenticate_client(settings, form, authorization)
            return settings.client_id, settings.token_endpoint_auth_method
        if authorization is not None:
            presented, method = _basic_credentials(authorization), CLIENT_SECRET_BASIC
        else:
            presented, method = (form.get("client_id"), form.get("client_secret")), CLIENT_SECRET_POST
        if not _same(presented, (presented_id, extra.secret)):
            raise _TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)
        return presented_id, method

    def _verify_client_assertion(self, form: Mapping[str, str], authorization: str | None) -> str:
        """RFC 7523 §3 as a server checks a ``private_key_jwt`` client assertion; the client id it proves."""
        if authorization is not None or form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise _TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)
        try:
            header, claims = _jwt_parts(form.get("client_assertion", ""))
            client_id = claims.get("iss")
            with self._lock:
                client = self._clients.get(client_id) if isinstance(client_id, str) else None
            if client is None or client.public_key is None or claims.get("sub") != client_id:
                raise ValueError("unknown client")
            if form.get("client_id", client_id) != client_id:
                raise ValueError("client_id mismatch")
            _verify_jwt(form["client_assertion"], header, claims, client.public_key, self._endpoint_urls())
            jti = claims.get("jti")
            with self._lock:
                if not isinstance(jti, str) or jti in self._used_jtis:
                    raise ValueError("replayed assertion")
                self._used_jtis.add(jti)
        except (ValueError, KeyError):
            raise _TokenError("invalid_client", HTTPStatus.UNAUTHORIZED) from None
        return client_id

    def _client_credentials(
        self, settings: DemoSettings, form: Mapping[str, str], client_id: str, method: str
    ) -> dict[str, Any]:
        grant = MachineGrant(
            "client_credentials",
            client_id,
            form.get("scope", ""),
            audience=form.get("audience"),
            resource=form.get("resource"),
            client_authentication=method,
        )
        return self._issue_machine(settings, grant)

    def _jwt_bearer(self, settings: DemoSettings, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 7523 §2.1 and §3: a valid assertion from a known service account buys an access token."""
        assertion = form.get("assertion", "")
        try:
            header, claims = _jwt_parts(assertion)
            issuer = claims.get("iss")
            with self._lock:
                account = self._service_accounts.get(issuer) if isinstance(issuer, str) else None
            if account is None:
                raise ValueError("unknown issuer")
            if account.key_id is not None and header.get("kid") != account.key_id:
                raise ValueError("unknown key id")
            _verify_jwt(assertion, header, claims, account.public_key, self._endpoint_urls())
        except (ValueError, KeyError):
            raise _TokenError("invalid_grant") from None
        scope = form.get("scope") or str(claims.get("scope", ""))
        subject = claims.get("sub")
        grant = MachineGrant(JWT_BEARER, issuer, scope, acting_for=subject if isinstance(subject, str) else None)
        return self._issue_machine(settings, grant)

    def _issue_machine(self, settings: DemoSettings, grant: MachineGrant) -> dict[str, Any]:
        with self._lock:
            self._machine_grants.append(grant)
        return self._issue(settings, grant.scope, with_refresh_token=False)

    def _endpoint_urls(self) -> tuple[str, ...]:
        """What an assertion's ``aud`` may name: this server's issuer, token or revocation endpoint."""
        base = self.base_url
        return (self.issuer, f"{base}/token", f"{base}/revoke")

    def _authenticate_client(self, settings: DemoSettings, form: Mapping[str, str], authorization: str | None) -> None:
        """Exactly the configured method: a client that authenticates another way is refused."""
        if settings.client_secret is None:
            presented = (form.get("client_id"), None)
            expected: tuple[str | None, str | None] = (settings.client_id, None)
            ok = presented == expected and authorization is None
        elif settings.token_endpoint_auth_method == CLIENT_SECRET_POST:
            presented = (form.get("client_id"), form.get("client_secret"))
            ok = authorization is None and _same(presented, (settings.client_id, settings.client_secret))
        else:
            presented = _basic_credentials(authorization)
            ok = "client_secret" not in form and _same(presented, (settings.client_id, settings.client_secret))
            ok = ok and form.get("client_id", settings.client_id) == settings.client_id
        if not ok:
            raise _TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)

    def _exchange_code(self, settings: DemoSettings, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        with self._lock:
            grant = self._grants.pop(code, None)
            if grant is None:
                if code in self._used_codes:
                    self._code_reuse += 1
                raise _TokenError("invalid_grant")
            self._used_codes.add(code)
        if grant.expires_at < time.monotonic() or form.get("redirect_uri") != grant.redirect_uri:
            raise _TokenError("invalid_grant")
        verifier = form.get("code_verifier")
        if grant.code_challenge is None:
            if verifier is not None:
                raise _TokenError("invalid_grant")
        elif verifier is None or not secrets.compare_digest(_s256(verifier), grant.code_challenge):
            raise _TokenError("invalid_grant")
        document = self._issue(settings, grant.scope, with_refresh_token=settings.issue_refresh_tokens)
        if not settings.nested_authed_user:
            return document
        bot = self._issue(settings, "bot", with_refresh_token=False)
        return {
            "ok": True,
            **bot,
            "token_type": "bot",
            "team": {"id": "T0DEMO", "name": "Demo Team"},
            "authed_user": {"id": "U0DEMO", **document, "token_type": "user"},
        }

    def _refresh(self, settings: DemoSettings, form: Mapping[str, str]) -> dict[str, Any]:
        presented = form.get("refresh_token", "")
        with self._lock:
            record = self._refresh_tokens.get(presented)
            if record is None or presented in self._revoked:
                raise _TokenError("invalid_grant")
            if record.rotated:
                self._refresh_token_reuse += 1
                raise _TokenError("invalid_grant")
            record.rotated = settings.rotate_refresh_tokens
        document = self._issue(settings, record.scope, with_refresh_token=settings.rotate_refresh_tokens)
        return {"ok": True, **document} if settings.nested_authed_user else document

    def _issue(self, settings: DemoSettings, scope: str, *, with_refresh_token: bool) -> dict[str, Any]:
        access_token = "at_" + secrets.token_urlsafe(24)
        lifetime = settings.expires_in if settings.expires_in is not None else 10 * 365 * 86_400
        document: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "scope": scope}
        if settings.expires_in is not None:
            document["expires_in"] = settings.expires_in
        with self._lock:
            self._access_tokens[access_token] = time.monotonic() + lifetime
            if with_refresh_token:
                refresh_token = "rt_" + secrets.token_urlsafe(24)
                self._refresh_tokens[refresh_token] = _RefreshToken(scope)
                document["refresh_token"] = refresh_token
        return {**document, **settings.extra_fields}

    def issue_grants(self, count: int, scope: str = "read") -> list[dict[str, Any]]:
        """``count`` token documents as a code exchange would answer them, issued directly: how a benchmark gets a
        hundred thousand real grants without a hundred thousand browser round trips."""
        settings = self.settings
        return [self._issue(settings, scope, with_refresh_token=True) for _ in range(count)]

    def _access_token_is_active(self, token: str) -> bool:
        expires_at = self._access_tokens.get(token)
        return expires_at is not None and expires_at > time.monotonic() and token not in self._revoked

    # plumbing for the handler --------------------------------------------------------------------

    def _enter_token_call(self, grant_type: str) -> Fault | None:
        with self._lock:
            self._token_calls[grant_type] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            return self._next_fault("/token")

    def _leave_token_call(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _next_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        return queue.popleft() if queue else None

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            return self._next_fault(path)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False if it did."""
        return seconds <= 0 or not self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once; the default backlog is 5

    def __init__(self, address: tuple[str, int], handler: type[_Handler], provider: DemoProvider) -> None:
        super().__init__(address, handler)
        self.provider = provider


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms Nagle stall
    timeout = 10  # idle keep-alive connections give their thread back
    # Headers and body go out in two writes: with Nagle on, the client's delayed ACK adds ~40 ms to every answer.
    disable_nagle_algorithm = True

    @property
    def provider(self) -> DemoProvider:
        return cast("_Server", self.server).provider

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry codes and states."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/api/"):
            self._api()
        elif url.path == "/demo/stats":
            stats = self.provider.stats()
            self._send_json(
                HTTPStatus.OK,
                {
                    "token_calls": dict(stats.token_calls),
                    "refresh_token_reuse": stats.refresh_token_reuse,
                    "code_reuse": stats.code_reuse,
                    "api_calls": len(stats.api_calls),
                },
            )
        elif url.path == "/authorize":
            status, target = self.provider.authorize(params)
            if status == HTTPStatus.FOUND:
                self._send(status, b"", "text/plain", (("Location", target),))
            else:
                self._send(status, target.encode(), "text/plain")
        elif url.path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            self._send_json(HTTPStatus.OK, self.provider.metadata())
        elif url.path == "/device":
            decide = self.provider.deny_device if params.get("deny") == "1" else self.provider.approve_device
            if decide(params.get("user_code", "")):
                self._send(HTTPStatus.OK, b"done: you can close this page", "text/plain")
            else:
                self._send(HTTPStatus.BAD_REQUEST, b"unknown or used code", "text/plain")
        elif url.path == "/userinfo":
            info = self.provider.userinfo(self.headers.get("Authorization"))
            if info is None:
                self._send_json(
                    HTTPStatus.UNAUTHORIZED,
                    {"error": "invalid_token"},
                    (("WWW-Authenticate", 'Bearer error="invalid_token"'),),
                )
            else:
                self._send_json(HTTPStatus.OK, info)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/api/"):
            self._api()
            return
        if path == "/demo/expire-access-tokens":
            self.provider.expire_access_tokens()
            self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
            return
        form = self._read_form()
        if path == "/token":
            self._token(form)
        elif path == "/device_authorization":
            self._device_authorization(form)
        elif path == "/revoke":
            self._revoke(form)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _api(self) -> None:
        """Any method under ``/api/``: faults first, then latency, then the provider's answer."""
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_API_BODY_BYTES:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"", "text/plain")
            return
        body = self.rfile.read(length) if length else b""
        provider = self.provider
        fault = provider._take_fault(url.path)
        if not provider._sleep(provider.settings.api_latency_seconds + (fault.delay_seconds if fault else 0.0)):
            self.close_connection = True
            return
        if fault is not None and (fault.drop_connection or fault.status is not None):
            self._send_fault(fault)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        via, credential = _api_credential(headers, url.query)
        call = ApiCall(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={k: v for k, v in headers.items() if k not in ("authorization", "x-demo-key")},
            body=body,
            credential_via=via,
            credential=credential,
        )
        status, document, extra = provider.api(call)
        if isinstance(document, bytes):
            self._send(status, document, "application/octet-stream", extra)
        else:
            self._send(status, json.dumps(document).encode(), "application/json", extra)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _api  # noqa: N815 - the API takes any method

    def _token(self, form: Mapping[str, str] | None) -> None:
        """The call counts as in flight until its answer is decided, not until it is written: a client that has
        read the answer may send its next request before this thread would have left, which would count two
        calls the client never had in flight together."""
        provider = self.provider
        settings = provider.settings
        grant_type = form.get("grant_type", "missing") if form is not None else "malformed"
        fault = provider._enter_token_call(grant_type)
        try:
            if not provider._sleep(settings.latency_seconds + (fault.delay_seconds if fault else 0.0)):
                self.close_connection = True
                return
            if fault is not None and (fault.drop_connection or fault.status is not None):
                answer: Callable[[], None] = functools.partial(self._send_fault, fault)
            else:
                try:
                    if form is None:
                        raise _TokenError("invalid_request")
                    document = provider.token(form, self.headers.get("Authorization"))
                except _TokenError as error:
                    answer = functools.partial(self._send_token_error, settings, error)
                else:
                    answer = functools.partial(self._send_document, settings, HTTPStatus.OK, document)
        finally:
            provider._leave_token_call()
        answer()

    def _device_authorization(self, form: Mapping[str, str] | None) -> None:
        fault = self.provider._take_fault("/device_authorization")
        if fault is not None:
            self._send_fault(fault)
            return
        try:
            if form is None:
                raise _TokenError("invalid_request")
            document = self.provider.device_authorization(form, self.headers.get("Authorization"))
        except _TokenError as error:
            self._send_json(error.status, {"error": error.code})
        else:
            self._send_json(HTTPStatus.OK, document)

    def _revoke(self, form: Mapping[str, str] | None) -> None:
        fault = self.provider._take_fault("/revoke")
        if fault is not None:
            if self.provider._sleep(fault.delay_seconds):
                self._send_fault(fault)
            else:
                self.close_connection = True
            return
        try:
            if form is None:
                raise _TokenError("invalid_request")
            self.provider.revoke(form, self.headers.get("Authorization"))
        except _TokenError as error:
            self._send_json(error.status, {"error": error.code})
        else:
            self._send(HTTPStatus.OK, b"", "text/plain")

    def _read_form(self) -> dict[str, str] | None:
        """The urlencoded body, or None if malformed or with a repeated parameter (RFC 6749 §3.2)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_REQUEST_BYTES:
            self.close_connection = True
            return None
        pairs = parse_qsl(self.rfile.read(length).decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        return form if len(form) == len(pairs) else None

    def _send_token_error(self, settings: DemoSettings, error: _TokenError) -> None:
        document: dict[str, Any] = {"error": error.code}
        if settings.nested_authed_user:
            document = {"ok": False, **document}
        status = HTTPStatus.OK if settings.errors_as_200 else error.status
        headers = (("WWW-Authenticate", 'Basic realm="demo"'),) if status == HTTPStatus.UNAUTHORIZED else ()
        self._send_document(settings, status, document, headers)

    def _send_document(
        self, settings: DemoSettings, status: int, document: Mapping[str, Any], headers: _Headers = ()
    ) -> None:
        if settings.form_encoded:
            body = urlencode({key: str(value) for key, value in document.items()}).encode()
            self._send(status, body, "application/x-www-form-urlencoded", headers)
        else:
            self._send_json(status, document, headers)

    def _send_fault(self, fault: Fault) -> None:
        if fault.drop_connection:
            self.close_connection = True  # nothing written: the client sees the connection end
            return
        self._send(fault.status or HTTPStatus.OK, fault.body, fault.content_type, fault.headers)

    def _send_json(self, status: int, document: Mapping[str, Any], headers: _Headers = ()) -> None:
        self._send(status, json.dumps(document).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: _Headers = ()) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout fired)


type _Headers = tuple[tuple[str, str], ...]


def _with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, (parts.query, urlencode(params))))
    return urlunsplit(parts._replace(query=query))


def _api_credential(headers: Mapping[str, str], query: str) -> tuple[str | None, str | None]:
    """Where a demo API request carries its credential and what it is: ``(via, credential)``, basic as
    ``user:password``; the ``Authorization`` header first, then ``X-Demo-Key``, then ``?api_key=``."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return "bearer", value
    if scheme.lower() == "basic":
        try:
            return "basic", base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:
            return None, None
    if headers.get("x-demo-key"):
        return "header", headers["x-demo-key"]
    key = dict(parse_qsl(query, keep_blank_values=True)).get("api_key")
    return ("query", key) if key else (None, None)


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """``(client_id, secret)`` from an HTTP Basic header, both form-urldecoded (RFC 6749 §2.3.1)."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except ValueError:
        return None, None
    client_id, sep, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else (None, None)


def _same(presented: tuple[str | None, str | None], expected: tuple[str | None, str | None]) -> bool:
    """Constant-time comparison of credential pairs, as a real server must do."""
    return all(
        a is not None and b is not None and secrets.compare_digest(a.encode(), b.encode())
        for a, b in zip(presented, expected, strict=True)
    )


def _s256(verifier: str) -> str:
    """Written out here rather than imported from connvault, so a bug there cannot hide in both."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified; ``ValueError`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header, claims = (json.loads(_b64url_decode(part)) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not JSON objects")
    return header, claims


def _verify_jwt(
    token: str, header: Mapping[str, Any], claims: Mapping[str, Any], key: Any, audiences: tuple[str, ...]
) -> None:
    """Signature (RS256 with an RSA key, ES256 with a P-256 key), audience and times, as RFC 7523 §3 asks."""
    signing_input, _, signature_part = token.rpartition(".")
    signature = _b64url_decode(signature_part)
    algorithm = header.get("alg")
    try:
        if algorithm == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        else:
            raise ValueError("unsupported algorithm for this key")
    except InvalidSignature:
        raise ValueError("bad signature") from None
    audience = claims.get("aud")
    named = audience if isinstance(audience, list) else [audience]
    if not any(isinstance(value, str) and value in audiences for value in named):
        raise ValueError("not for this server")
    now = time.time()
    expires, issued = claims.get("exp"), claims.get("iat")
    if not isinstance(expires, int | float) or expires <= now - CLOCK_SKEW_SECONDS:
        raise ValueError("expired")
    if isinstance(issued, int | float) and (
        issued > now + CLOCK_SKEW_SECONDS or expires - issued > MAX_ASSERTION_LIFETIME_SECONDS
    ):
        raise ValueError("issued in the future or lives too long")


def _b64url_decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
