"""What a token endpoint answered, parsed (``oauth/responses.py``): the OAuth client's result, never stored as is.

Apart from ``credentials`` because token fetch's warm path never builds one (only a refresh does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connvault.redacted import Redacted


@dataclass(frozen=True, slots=True)
class OAuth2Tokens:
    """What a token endpoint answered, parsed.

    ``extra`` keeps the response's non-secret fields (e.g. Salesforce's instance_url) for metadata.
    """

    access_token: Redacted[str]
    token_type: str = "Bearer"
    refresh_token: Redacted[str] | None = None
    id_token: Redacted[str] | None = None
    expires_at: datetime | None = None
    scopes: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    provider_account_id: Redacted[str] | None = None
    """The provider's id for the connected account, as the catalog's ``account_id_fields`` find it; None when
    the response does not carry one."""
