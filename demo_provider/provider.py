"""``DemoProvider``: the fake OAuth 2 provider's state, and the logic of each of its endpoints (the HTTP server in
``server.py`` calls it). Thread-safe: one lock around every piece of state."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization

from demo_provider.assertions import b64url_json, jwt_parts, verify_jwt
from demo_provider.credentials import basic_credentials, s256, same_credentials
from demo_provider.errors import TokenError
from demo_provider.records import ApiCall, AuthorizationRecord, DemoStats, Headers, MachineGrant
from demo_provider.server import DemoServer, RequestHandler
from demo_provider.settings import (
    CLIENT_ASSERTION_TYPE,
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_POST,
    DEVICE_CODE,
    JWT_BEARER,
    PRIVATE_KEY_JWT,
    DemoSettings,
)

if TYPE_CHECKING:
    from demo_provider.faults import Fault

_API_ITEMS = 45
"""How many items ``GET /api/items`` pages through."""
_INVALID_TOKEN = (("WWW-Authenticate", 'Bearer error="invalid_token"'),)
_HEADERS_A_PROXY_MUST_DROP = (
    ("Set-Cookie", "demo_session=1; HttpOnly"),
    ("Connection", "X-Demo-Hop"),
    ("X-Demo-Hop", "1"),
    ("Strict-Transport-Security", "max-age=63072000"),
    ("X-RateLimit-Remaining", "99"),
)
"""On ``/api/echo``: cookies, a hop-by-hop header (named by ``Connection``), HSTS, and one that may cross."""


@dataclass(frozen=True, slots=True)
class _Client:
    """A client other than the configured one: a secret (basic or post), or a public key (private_key_jwt)."""

    secret: str | None = None
    public_key: Any = None


@dataclass(frozen=True, slots=True)
class _ServiceAccount:
    public_key: Any
    key_id: str | None


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


class DemoProvider:
    """The server and its state; thread-safe, one lock around every piece of state."""

    def __init__(self, settings: DemoSettings | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._settings = settings or DemoSettings()
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: DemoServer | None = None
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
        self._server = DemoServer(self._address, RequestHandler, self)
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
        assert isinstance(host, str)  # an AF_INET server's address
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
                raise TokenError("invalid_grant")
            self._device_polls.setdefault(grant.user_code, []).append(now)
            early = grant.last_poll is not None and now - grant.last_poll < grant.interval
            grant.last_poll = now
            if grant.expires_at <= now:
                raise TokenError("expired_token")
            if early:
                self._device_polls_too_early += 1
                grant.interval += 5
                raise TokenError("slow_down")
            if grant.state == "denied":
                raise TokenError("access_denied")
            if grant.state == "pending":
                raise TokenError("authorization_pending")
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

    def api(self, call: ApiCall) -> tuple[int, dict[str, Any] | bytes, Headers]:
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
            # ``quoted_headers=N``: N headers of 344 double quotes each, which JSON escapes to twice their length.
            quoted = int(params["quoted_headers"]) if params.get("quoted_headers", "").isdigit() else 0
            return HTTPStatus.OK, b"x" * int(params["size"]), tuple((f"h{n:02d}", '"' * 344) for n in range(quoted))
        return HTTPStatus.NOT_FOUND, {"error": "not_found"}, ()

    def _items(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any], Headers]:
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
        """The success document for a token request; raises ``TokenError`` for an OAuth error."""
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
            raise TokenError("unauthorized_client")
        if grant_type == "authorization_code":
            return self._exchange_code(settings, form)
        if grant_type == "refresh_token":
            return self._refresh(settings, form)
        raise TokenError("unsupported_grant_type")

    def revoke(self, form: Mapping[str, str], authorization: str | None) -> None:
        """RFC 7009: unknown tokens are fine; the client must still authenticate."""
        self._authenticate_any_client(self.settings, form, authorization)
        token = form.get("token")
        if not token:
            raise TokenError("invalid_request")
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
        presented_id = form.get("client_id") or basic_credentials(authorization)[0]
        with self._lock:
            extra = self._clients.get(presented_id) if presented_id else None
        if not presented_id or extra is None or extra.secret is None:
            self._authenticate_client(settings, form, authorization)
            return settings.client_id, settings.token_endpoint_auth_method
        if authorization is not None:
            presented, method = basic_credentials(authorization), CLIENT_SECRET_BASIC
        else:
            presented, method = (form.get("client_id"), form.get("client_secret")), CLIENT_SECRET_POST
        if not same_credentials(presented, (presented_id, extra.secret)):
            raise TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)
        return presented_id, method

    def _verify_client_assertion(self, form: Mapping[str, str], authorization: str | None) -> str:
        """RFC 7523 §3 as a server checks a ``private_key_jwt`` client assertion; the client id it proves."""
        if authorization is not None or form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)
        try:
            header, claims = jwt_parts(form.get("client_assertion", ""))
            client_id = claims.get("iss")
            if not isinstance(client_id, str):
                raise ValueError("no issuer")
            with self._lock:
                client = self._clients.get(client_id)
            if client is None or client.public_key is None or claims.get("sub") != client_id:
                raise ValueError("unknown client")
            if form.get("client_id", client_id) != client_id:
                raise ValueError("client_id mismatch")
            verify_jwt(form["client_assertion"], header, claims, client.public_key, self._endpoint_urls())
            jti = claims.get("jti")
            with self._lock:
                if not isinstance(jti, str) or jti in self._used_jtis:
                    raise ValueError("replayed assertion")
                self._used_jtis.add(jti)
        except (ValueError, KeyError):
            raise TokenError("invalid_client", HTTPStatus.UNAUTHORIZED) from None
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
            header, claims = jwt_parts(assertion)
            issuer = claims.get("iss")
            if not isinstance(issuer, str):
                raise ValueError("no issuer")
            with self._lock:
                account = self._service_accounts.get(issuer)
            if account is None:
                raise ValueError("unknown issuer")
            if account.key_id is not None and header.get("kid") != account.key_id:
                raise ValueError("unknown key id")
            verify_jwt(assertion, header, claims, account.public_key, self._endpoint_urls())
        except (ValueError, KeyError):
            raise TokenError("invalid_grant") from None
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
        presented: tuple[str | None, str | None]
        if settings.client_secret is None:
            presented = (form.get("client_id"), None)
            expected: tuple[str | None, str | None] = (settings.client_id, None)
            ok = presented == expected and authorization is None
        elif settings.token_endpoint_auth_method == CLIENT_SECRET_POST:
            presented = (form.get("client_id"), form.get("client_secret"))
            ok = authorization is None and same_credentials(presented, (settings.client_id, settings.client_secret))
        else:
            presented = basic_credentials(authorization)
            ok = "client_secret" not in form and same_credentials(
                presented, (settings.client_id, settings.client_secret)
            )
            ok = ok and form.get("client_id", settings.client_id) == settings.client_id
        if not ok:
            raise TokenError("invalid_client", HTTPStatus.UNAUTHORIZED)

    def _exchange_code(self, settings: DemoSettings, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code", "")
        with self._lock:
            grant = self._grants.pop(code, None)
            if grant is None:
                if code in self._used_codes:
                    self._code_reuse += 1
                raise TokenError("invalid_grant")
            self._used_codes.add(code)
        if grant.expires_at < time.monotonic() or form.get("redirect_uri") != grant.redirect_uri:
            raise TokenError("invalid_grant")
        verifier = form.get("code_verifier")
        if grant.code_challenge is None:
            if verifier is not None:
                raise TokenError("invalid_grant")
        elif verifier is None or not secrets.compare_digest(s256(verifier), grant.code_challenge):
            raise TokenError("invalid_grant")
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
                raise TokenError("invalid_grant")
            if record.rotated:
                self._refresh_token_reuse += 1
                raise TokenError("invalid_grant")
            record.rotated = settings.rotate_refresh_tokens
        document = self._issue(settings, record.scope, with_refresh_token=settings.rotate_refresh_tokens)
        return {"ok": True, **document} if settings.nested_authed_user else document

    def _issue(self, settings: DemoSettings, scope: str, *, with_refresh_token: bool) -> dict[str, Any]:
        access_token = "at_" + secrets.token_urlsafe(24)
        lifetime = settings.expires_in if settings.expires_in is not None else 10 * 365 * 86_400
        document: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "scope": scope}
        if settings.expires_in is not None:
            document["expires_in"] = settings.expires_in
        if settings.id_token_subject is not None:
            document["id_token"] = self._id_token(settings, settings.id_token_subject, lifetime)
        with self._lock:
            self._access_tokens[access_token] = time.monotonic() + lifetime
            if with_refresh_token:
                refresh_token = "rt_" + secrets.token_urlsafe(24)
                self._refresh_tokens[refresh_token] = _RefreshToken(scope)
                document["refresh_token"] = refresh_token
        return {**document, **settings.extra_fields}

    def _id_token(self, settings: DemoSettings, subject: str, lifetime: int) -> str:
        """An ID token without a signature (``alg`` none): connvault reads one as it came from the token endpoint
        over TLS, never checking it (OpenID Connect Core 3.1.3.7), so signing would prove nothing here."""
        at = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": settings.client_id, "iat": at, "exp": at + lifetime}
        return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."

    def issue_grants(self, count: int, scope: str = "read") -> list[dict[str, Any]]:
        """``count`` token documents as a code exchange would answer them, issued directly: how a benchmark gets a
        hundred thousand real grants without a hundred thousand browser round trips."""
        settings = self.settings
        return [self._issue(settings, scope, with_refresh_token=True) for _ in range(count)]

    def _access_token_is_active(self, token: str) -> bool:
        expires_at = self._access_tokens.get(token)
        return expires_at is not None and expires_at > time.monotonic() and token not in self._revoked

    # plumbing for the HTTP handler (server.py) ---------------------------------------------------

    def enter_token_call(self, grant_type: str) -> Fault | None:
        """Count a ``/token`` request as in flight (the concurrency tests read the peak); the fault it gets."""
        with self._lock:
            self._token_calls[grant_type] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            return self._next_fault("/token")

    def leave_token_call(self) -> None:
        """The ``/token`` request's answer is decided: no longer in flight."""
        with self._lock:
            self._in_flight -= 1

    def _next_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        return queue.popleft() if queue else None

    def take_fault(self, path: str) -> Fault | None:
        """The next fault injected for ``path``, consumed; None when none is queued."""
        with self._lock:
            return self._next_fault(path)

    def sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False if it did."""
        return seconds <= 0 or not self._stopping.wait(seconds)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to whatever query it already has (a redirect URI may carry one)."""
    parts = urlsplit(url)
    query = "&".join(filter(None, (parts.query, urlencode(params))))
    return urlunsplit(parts._replace(query=query))
