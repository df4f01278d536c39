"""The one place the connect page calls a provider: the catalog-declared request that tells whether the API key
or password an end user typed works, before it is saved.

The URL comes from the catalog (or the devserver's demo row), with non-secret form fields filled into it after
they matched their patterns; the credentials go in a header, never in the URL. The call goes through the shared
``HttpTransport``, so through the egress guard (``connvault/egress.py``) like every call to a URL a tenant or end
user can influence. No redirect is followed and nothing of the answer is kept but its status.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import quote

from connvault import wiring
from connvault.errors import ProviderUnavailable
from connvault.models import ApiKeyCredentials, BasicCredentials, CheckAuth

if TYPE_CHECKING:
    from collections.abc import Mapping

    from connvault.models import CredentialCheck
    from connvault.oauth.http import HttpTransport

REFUSED_STATUSES = frozenset({401, 403})


class CheckOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    """The provider said no: the end user typed something that does not work."""
    UNAVAILABLE = "unavailable"
    """The provider could not tell (down, slow, an answer that is neither yes nor no): try again later."""


def check_credentials(
    check: CredentialCheck,
    credentials: ApiKeyCredentials | BasicCredentials,
    details: Mapping[str, str],
    *,
    transport: HttpTransport | None = None,
) -> CheckOutcome:
    """Ask the provider whether ``credentials`` work. ``details`` are the non-secret form fields the URL names."""
    url = check.url.format_map({name: quote(value, safe="") for name, value in details.items()})
    try:
        answer = (transport or wiring.get_http_transport()).request(
            "GET", url, headers={**_authorization(check, credentials), "Accept": "application/json"}
        )
    except ProviderUnavailable:
        return CheckOutcome.UNAVAILABLE
    if 200 <= answer.status < 300:
        return CheckOutcome.ACCEPTED
    if answer.status in REFUSED_STATUSES:
        return CheckOutcome.REFUSED
    return CheckOutcome.UNAVAILABLE


def _authorization(check: CredentialCheck, credentials: ApiKeyCredentials | BasicCredentials) -> dict[str, str]:
    if isinstance(credentials, BasicCredentials):
        username, password = credentials.username, credentials.password.reveal()
    else:
        username, password = credentials.api_key.reveal(), ""
    if check.auth is CheckAuth.BASIC:
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {encoded}"}
    secret = password if isinstance(credentials, BasicCredentials) else username
    if check.auth is CheckAuth.HEADER and check.header is not None:
        return {check.header: secret}
    return {"Authorization": f"Bearer {secret}"}
