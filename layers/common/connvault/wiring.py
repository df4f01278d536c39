"""The process's shared collaborators, each built once on first use: engine, sealer, OAuth client.

Services take these as keyword arguments whose ``None`` default means "the one from here". Tests call
``reset()`` after changing the environment. The database's own (engine, sealer, blind-index keys) are built at
their floor (``db/engine.py``, ``db/sealing.py``) and only named here, so ``db/`` never reaches back up. What only
some functions use (SQLAlchemy's engine, the HTTP pools) is imported when first asked for: token fetch's cold start
needs the sealer and nothing else from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connvault.config import get_settings
from connvault.crypto.kms import get_kms_client
from connvault.db import sealing
from connvault.db.fast_reads import reset_fast_reads
from connvault.once import once
from connvault.services.rate_limits import reset_rate_limiter

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from connvault.oauth.client import OAuthClient
    from connvault.oauth.http import HttpTransport

get_sealer = sealing.get_sealer
get_blind_index_keys = sealing.get_blind_index_keys
tenant_key_salt = sealing.tenant_key_salt
WEBHOOK_ANSWER_BYTES = 64 * 1024
"""A receiver's answer is read (to keep the connection reusable) and ignored; more than this is not read."""


def get_session_factory() -> sessionmaker[Session]:
    """The process's SQLAlchemy sessions (``db/engine.py``), imported on first use."""
    from connvault.db import engine

    return engine.get_session_factory()


@once
def get_oauth_client() -> OAuthClient:
    """One HTTP pool per process for every provider call."""
    from connvault.oauth.client import OAuthClient

    return OAuthClient()


@once
def get_webhook_transport() -> HttpTransport:
    """The webhook sender's HTTP pool: the provider calls' transport (and so its egress guard), with the short
    webhook deadline and one connection per sending thread."""
    from connvault.oauth.http import HttpTransport

    settings = get_settings()
    return HttpTransport(
        settings.webhook_deadline_seconds, maxsize=settings.webhook_concurrency, max_body_bytes=WEBHOOK_ANSWER_BYTES
    )


@once
def get_proxy_transport() -> HttpTransport:
    """The proxy's own pool: its calls may be large and slow, and must not hold the OAuth client's connections."""
    from connvault.oauth.http import HttpTransport
    from connvault.proxy.limits import MAX_RESPONSE_BODY_BYTES

    settings = get_settings()
    return HttpTransport(settings.proxy_deadline_seconds, max_body_bytes=MAX_RESPONSE_BODY_BYTES)


@once
def get_http_transport() -> HttpTransport:
    """The pool for provider calls that are not OAuth's (the connect page's credential checks)."""
    from connvault.oauth.http import HttpTransport

    return HttpTransport(get_settings().http_timeout_seconds)


def reset() -> None:
    """Forget every cached collaborator and the settings they were built from."""
    from connvault.db import engine
    from connvault.db.refresh_statements import reset_refresh_statements
    from connvault.oauth.http import HttpTransport

    sealing.reset()
    get_oauth_client.cache_clear()
    get_webhook_transport.cache_clear()
    get_http_transport.cache_clear()
    get_proxy_transport.cache_clear(HttpTransport.close)
    engine.reset()
    reset_fast_reads()
    reset_refresh_statements()
    reset_rate_limiter()
    get_settings.cache_clear()


__all__ = [
    "get_blind_index_keys",
    "get_http_transport",
    "get_kms_client",
    "get_oauth_client",
    "get_proxy_transport",
    "get_sealer",
    "get_session_factory",
    "get_webhook_transport",
    "reset",
    "tenant_key_salt",
]
