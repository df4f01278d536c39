"""A fake OAuth 2 provider on a real local HTTP server, for the tests and for ``make run``.

It implements just enough of RFC 6749, 7636 (PKCE S256), 7009 (revocation), 8414 (metadata), 9207
(``iss``) and 7523 (JWT assertions) to exercise connvault end to end over real sockets:

* ``GET /authorize`` approves at once and redirects to the client with ``code`` and ``state`` (or
  ``error=access_denied`` with ``?deny=1`` or ``deny_authorization``), so a browser or a test that
  follows the redirect gets a code without a login page.
* ``POST /token`` serves ``authorization_code`` (single-use codes, exact ``redirect_uri``, PKCE) and
  ``refresh_token`` (with or without rotation). Presenting an already-rotated refresh token is counted
  as ``refresh_token_reuse``: a race in the vault's refresh logic shows up there. With ``id_token_subject`` each
  answer carries an OpenID Connect ``id_token`` naming that end user.
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

A package of its own at the repository's root, not in connvault's layer and not under ``tests/``: the tests,
``bench/`` and the devserver (``make run``) all use it, and nothing of it ships. Import what it offers from the
package itself (its ``__all__``); the modules, one idea each:

* ``settings``: ``DemoSettings`` and the names of the client authentication methods and grant types;
* ``faults``: ``Fault``; ``records``: what the provider saw (``DemoStats`` and the records in it);
* ``provider``: ``DemoProvider``, the state and the logic of each endpoint;
* ``server``: the HTTP server and its request handler (``TCP_NODELAY`` on: no 40 ms Nagle stall per answer);
* ``credentials`` and ``assertions``: how a request's credentials and JWT assertions are read and checked.
"""

from demo_provider.faults import Fault
from demo_provider.provider import DemoProvider
from demo_provider.records import ApiCall, AuthorizationRecord, DemoStats, MachineGrant
from demo_provider.settings import (
    CLIENT_ASSERTION_TYPE,
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_POST,
    DEVICE_CODE,
    JWT_BEARER,
    PRIVATE_KEY_JWT,
    DemoSettings,
)

__all__ = [
    "CLIENT_ASSERTION_TYPE",
    "CLIENT_SECRET_BASIC",
    "CLIENT_SECRET_POST",
    "DEVICE_CODE",
    "JWT_BEARER",
    "PRIVATE_KEY_JWT",
    "ApiCall",
    "AuthorizationRecord",
    "DemoProvider",
    "DemoSettings",
    "DemoStats",
    "Fault",
    "MachineGrant",
]
