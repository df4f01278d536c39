"""The process's shared collaborators, each built once on first use: engine, sealer, OAuth client.

Services take these as keyword arguments whose ``None`` default means "the one from here". Tests call
``reset()`` after changing the environment. The database's own (engine, sealer, blind-index keys) are built at
their floor (``db/engine.py``, ``db/sealing.py``) and only named here, so ``db/`` never reaches back up.
"""

from __future__ import annotations

from functools import lru_cache

from connvault.config import get_settings
from connvault.crypto.kms import get_kms_client
from connvault.db import engine, sealing
from connvault.db.fast_reads import reset_fast_reads
from connvault.db.refresh_statements import reset_refresh_statements
from connvault.db.tenants import tenant_key_salt
from connvault.oauth.client import OAuthClient
from connvault.oauth.http import HttpTransport
from connvault.proxy.limits import MAX_RESPONSE_BODY_BYTES
from connvault.services.rate_limits import reset_rate_limiter

get_session_factory = engine.get_session_factory
get_sealer = sealing.get_sealer
get_blind_index_keys = sealing.get_blind_index_keys
WEBHOOK_ANSWER_BYTES = 64 * 1024
"""A receiver's answer is read (to keep the connection reusable) and ignored; more than this is not read."""


@lru_cache(maxsize=1)
def get_oauth_client() -> OAuthClient:
    """One HTTP pool per process for every provider call."""
    return OAuthClient()


@lru_cache(maxsize=1)
def get_webhook_transport() -> HttpTransport:
    """The webhook sender's HTTP pool: the provider calls' transport (and so its egress guard), with the short
    webhook deadline and one connection per sending thread."""
    settings = get_settings()
    return HttpTransport(
        settings.webhook_deadline_seconds, maxsize=settings.webhook_concurrency, max_body_bytes=WEBHOOK_ANSWER_BYTES
    )


@lru_cache(maxsize=1)
def get_proxy_transport() -> HttpTransport:
    """The proxy's own pool: its calls may be large and slow, and must not hold the OAuth client's connections."""
    settings = get_settings()
    return HttpTransport(settings.proxy_deadline_seconds, max_body_bytes=MAX_RESPONSE_BODY_BYTES)


@lru_cache(maxsize=1)
def get_http_transport() -> HttpTransport:
    """The pool for provider calls that are not OAuth's (the connect page's credential checks)."""
    return HttpTransport(get_settings().http_timeout_seconds)


def reset() -> None:
    """Forget every cached collaborator and the settings they were built from."""
    sealing.reset()
    get_oauth_client.cache_clear()
    get_webhook_transport.cache_clear()
    get_http_transport.cache_clear()
    if get_proxy_transport.cache_info().currsize:
        get_proxy_transport().close()
    get_proxy_transport.cache_clear()
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
