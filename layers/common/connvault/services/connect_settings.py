"""A tenant's connect page settings: the name its end users see, the origins that may embed the page, and the
return URLs any connect link may use (the only ones for links to API-key and basic providers, which have no
integration to list them)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from connvault.errors import InvalidInput
from connvault.models import ConnectSettings
from connvault.validation import LOOPBACK_HOSTS, browser_host, require_return_url, require_text

if TYPE_CHECKING:
    from connvault.db.uow import UnitOfWork

MAX_FRAME_ANCESTORS = 10
MAX_RETURN_URLS = 20
_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def read_settings(uow: UnitOfWork) -> ConnectSettings:
    with uow:
        return uow.connect_settings.get(uow.tenant)


def save_settings(uow: UnitOfWork, settings: ConnectSettings) -> ConnectSettings:
    """Replace the settings. Raises InvalidInput naming the field at fault."""
    display_name = settings.display_name
    if display_name is not None:
        display_name = require_text(display_name, "display_name", max_length=100).strip()
        if not display_name:
            raise InvalidInput("display_name must not be blank", field="display_name")
    if len(settings.frame_ancestors) > MAX_FRAME_ANCESTORS:
        raise InvalidInput(f"at most {MAX_FRAME_ANCESTORS} frame_ancestors", field="frame_ancestors")
    if len(settings.allowed_return_urls) > MAX_RETURN_URLS:
        raise InvalidInput(f"at most {MAX_RETURN_URLS} allowed_return_urls", field="allowed_return_urls")
    checked = ConnectSettings(
        display_name=display_name,
        frame_ancestors=tuple(dict.fromkeys(embedding_origin(origin) for origin in settings.frame_ancestors)),
        allowed_return_urls=tuple(
            dict.fromkeys(require_return_url(url, "allowed_return_urls") for url in settings.allowed_return_urls)
        ),
    )
    with uow:
        saved = uow.connect_settings.save(uow.tenant, checked)
        uow.commit()
    return saved


def embedding_origin(value: str) -> str:
    """An origin that may frame the page, as a CSP source: ``https://host[:port]`` (http only on loopback),
    lower case, nothing else. Anything that could end the header's directive or widen it (wildcards, paths,
    quotes, separators) is refused, not escaped."""
    field = "frame_ancestors"
    require_text(value, field, max_length=300)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInput("frame_ancestors holds an origin that is not a URL", field=field) from None
    host = browser_host(parts.hostname or "", field)
    if parts.scheme != "https" and not (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        raise InvalidInput("frame_ancestors must be https origins (http only on loopback)", field=field)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput("frame_ancestors must be origins: scheme, host and port only", field=field)
    if not _HOST.match(host) and host != "::1":
        raise InvalidInput("frame_ancestors holds a host name that is not valid", field=field)
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else "")
