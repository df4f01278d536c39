"""The OAuth 2 client: authorize URL, code exchange, refresh, the grants without an end user (client
credentials, JWT bearer) and revocation, for every provider.

There is one code path; providers differ only by ``Provider`` fields (endpoints, scope separator, extra
authorize parameters, client authentication method, response shape). Nothing here logs, stores or
retries: the services decide what a ``ReauthRequired`` or ``ProviderUnavailable`` means for a
connection, and a retried refresh could spend a rotating refresh token twice.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

from connvault.clock import utcnow
from connvault.config import get_settings
from connvault.errors import InvalidInput, ProviderMisconfigured, ProviderUnavailable
from connvault.models import (
    ClientAuthMethod,
    ClientCredentials,
    ClientCredentialsGrant,
    JwtBearerGrant,
    OAuth2Tokens,
    Provider,
)
from connvault.oauth.assertions import CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT_TYPE, client_assertion, grant_assertion
from connvault.oauth.device import DEVICE_CODE_GRANT_TYPE, DeviceAuthorization, parse_device_authorization
from connvault.oauth.http import HttpResponse, HttpTransport
from connvault.oauth.responses import parse_token_response

_ACCEPT_JSON = {"Accept": "application/json"}


class OAuthClient:
    """Talks to providers' OAuth endpoints through one ``HttpTransport`` (and so one connection pool)."""

    def __init__(self, transport: HttpTransport | None = None) -> None:
        self._transport = transport or HttpTransport(get_settings().http_timeout_seconds)

    def authorize_url(
        self,
        provider: Provider,
        client_id: str,
        redirect_uri: str,
        scopes: Sequence[str],
        state: str,
        code_challenge: str | None,
    ) -> str:
        """The URL the end user's browser is sent to (RFC 6749 §4.1.1, RFC 7636 §4.3).

        A query already in the catalog's ``authorization_url`` is kept, the catalog's
        ``authorize_params`` are added, and the protocol parameters come last so that neither can
        override ``state``, ``redirect_uri`` or the challenge.
        """
        base = urlsplit(_endpoint(provider.authorization_url, "authorization_url"))
        params: dict[str, str] = dict(parse_qsl(base.query, keep_blank_values=True))
        params.update(provider.authorize_params)
        params.update(response_type="code", client_id=client_id, redirect_uri=redirect_uri, state=state)
        if scopes:
            params[provider.scope_parameter] = provider.scope_separator.join(scopes)
        if code_challenge is not None:
            params.update(code_challenge=code_challenge, code_challenge_method="S256")
        return urlunsplit(base._replace(query=urlencode(params)))

    def exchange_code(
        self,
        provider: Provider,
        client: ClientCredentials,
        code: str,
        redirect_uri: str,
        code_verifier: str | None,
        now: datetime,
    ) -> OAuth2Tokens:
        """Trade an authorization code for tokens (RFC 6749 §4.1.3).

        The catalog's ``token_params`` go first, so they cannot override a protocol field.
        Raises ``ReauthRequired`` (code or client refused), ``ProviderRejected``, ``ProviderUnavailable``.
        """
        fields = {
            **provider.token_params,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }
        if code_verifier is not None:
            fields["code_verifier"] = code_verifier
        return self._token_request(provider, client, fields, now)

    def refresh(self, provider: Provider, client: ClientCredentials, refresh_token: str, now: datetime) -> OAuth2Tokens:
        """New tokens for a refresh token (RFC 6749 §6); no ``scope``, so the grant keeps its scopes.

        A provider that does not rotate answers without ``refresh_token``; the caller keeps the old one.
        Raises ``ReauthRequired`` (e.g. ``invalid_grant``), ``ProviderRejected``, ``ProviderUnavailable``.
        """
        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._token_request(provider, client, fields, now)

    def client_credentials(
        self, provider: Provider, grant: ClientCredentialsGrant, client: ClientCredentials, now: datetime
    ) -> OAuth2Tokens:
        """A token for the client itself (RFC 6749 §4.4), with the grant's scopes, ``audience`` (Auth0 and
        others) and ``resource`` (RFC 8707). Raises ``ReauthRequired`` (client refused), ``ProviderRejected``,
        ``ProviderUnavailable``."""
        fields = {"grant_type": "client_credentials"}
        if grant.scopes:
            fields["scope"] = provider.scope_separator.join(grant.scopes)
        if grant.audience is not None:
            fields["audience"] = grant.audience
        if grant.resource is not None:
            fields["resource"] = grant.resource
        url = grant.token_url or _endpoint(provider.token_url, "token_url")
        return self._token_request(provider, client, fields, now, url=url)

    def jwt_bearer(self, provider: Provider, grant: JwtBearerGrant, now: datetime) -> OAuth2Tokens:
        """A token for a signed assertion (RFC 7523 §2.1): the service account's key signs it here and goes
        nowhere. No client authentication: the assertion is the credential (as at Google).
        Raises ``ReauthRequired`` (assertion or key refused), ``ProviderRejected``, ``ProviderUnavailable``."""
        url = grant.token_url or _endpoint(provider.token_url, "token_url")
        scope = " ".join(grant.scopes)
        assertion = grant_assertion(
            issuer=grant.issuer,
            audience=grant.audience or url,
            key=grant.key,
            now=now,
            subject=grant.subject,
            scope=scope,
        )
        fields = {"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": assertion}
        if scope:
            fields["scope"] = scope
        response = self._transport.post_form(url, fields, _ACCEPT_JSON)
        return _parse(provider, response, now)

    def device_authorization(
        self, provider: Provider, client: ClientCredentials, scopes: Sequence[str], now: datetime
    ) -> DeviceAuthorization:
        """Start a device flow (RFC 8628 §3.1): a device code to poll with, a user code for the end user.
        Raises ``ReauthRequired`` (client refused), ``ProviderRejected``, ``ProviderUnavailable``."""
        url = _endpoint(provider.device_authorization_url, "device_authorization_url")
        fields = {"client_id": client.client_id}
        if scopes:
            fields["scope"] = provider.scope_separator.join(scopes)
        return parse_device_authorization(self._post(url, provider, client, fields, now), now)

    def poll_device(
        self, provider: Provider, client: ClientCredentials, device_code: str, now: datetime
    ) -> OAuth2Tokens:
        """One poll of the token endpoint for a device code (RFC 8628 §3.4). A refusal's ``reason`` says what it
        means (``authorization_pending``, ``slow_down``...; see ``oauth.device.poll_outcome``)."""
        fields = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
        return self._token_request(provider, client, fields, now)

    def revoke(self, provider: Provider, client: ClientCredentials, token: str, token_type_hint: str) -> bool:
        """Ask the provider to revoke ``token`` (RFC 7009); True only when it answered 200.

        Never raises for provider trouble: revocation is best-effort cleanup when a connection is
        deleted, and the connection goes whatever the provider says.
        """
        if provider.revocation_url is None:
            return False
        fields = {"token": token, "token_type_hint": token_type_hint}
        try:
            response = self._post(
                _endpoint(provider.revocation_url, "revocation_url"), provider, client, fields, utcnow()
            )
        except (ProviderUnavailable, ProviderMisconfigured):  # an endpoint we cannot call revokes nothing either
            return False
        return response.status == 200

    def _token_request(
        self,
        provider: Provider,
        client: ClientCredentials,
        fields: dict[str, str],
        now: datetime,
        *,
        url: str | None = None,
    ) -> OAuth2Tokens:
        response = self._post(url or _endpoint(provider.token_url, "token_url"), provider, client, fields, now)
        return _parse(provider, response, now)

    def _post(
        self, url: str, provider: Provider, client: ClientCredentials, fields: dict[str, str], now: datetime
    ) -> HttpResponse:
        method = client.auth_method or ClientAuthMethod(provider.token_endpoint_auth_method.value)
        body, headers = _authenticate(method, client, fields, url, now)
        return self._transport.post_form(url, body, {**_ACCEPT_JSON, **headers})


def _parse(provider: Provider, response: HttpResponse, now: datetime) -> OAuth2Tokens:
    return parse_token_response(
        response.status,
        response.content_type,
        response.body,
        provider.token_response_shape,
        now,
        retry_after=response.retry_after,
        account_id_fields=provider.account_id_fields,
    )


def _authenticate(
    method: ClientAuthMethod, client: ClientCredentials, fields: Mapping[str, str], url: str, now: datetime
) -> tuple[dict[str, str], dict[str, str]]:
    """The form fields and headers that authenticate ``client`` (RFC 6749 §2.3.1, RFC 7523 §2.2).

    A public client (no secret, no key) identifies itself with ``client_id`` in the body. For HTTP Basic, id
    and secret are form-urlencoded before base64, as §2.3.1 requires: a secret holding ``:`` or ``%`` would
    otherwise be misread. ``private_key_jwt`` signs an assertion whose audience is the endpoint called.
    """
    if method == ClientAuthMethod.PRIVATE_KEY_JWT and client.private_key is not None:
        assertion = client_assertion(client_id=client.client_id, audience=url, key=client.private_key, now=now)
        signed = {"client_id": client.client_id, "client_assertion_type": CLIENT_ASSERTION_TYPE}
        return {**fields, **signed, "client_assertion": assertion}, {}
    if client.client_secret is None:
        return {**fields, "client_id": client.client_id}, {}
    secret = client.client_secret.reveal()
    if method == ClientAuthMethod.CLIENT_SECRET_POST:
        return {**fields, "client_id": client.client_id, "client_secret": secret}, {}
    pair = f"{quote_plus(client.client_id)}:{quote_plus(secret)}".encode()
    return dict(fields), {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


def _endpoint(url: str | None, field: str) -> str:
    if not url:
        raise InvalidInput(f"the provider has no {field}", field=field)
    if "{" in url:
        # A template whose placeholders nobody filled (``connection_config.configured`` does), or a stored URL that
        # never was one: never a request. The provider's definition is at fault, not the caller's input (a token
        # fetch answered it 400 ``validation_error`` naming a connection_config nobody sent).
        raise ProviderMisconfigured(f"the provider's {field} holds a placeholder that nothing fills; nothing was sent")
    return url
