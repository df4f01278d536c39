"""How a request to the demo provider carries its credentials, and how they are compared: written out here rather
than imported from connvault, so a bug in the vault cannot hide in the provider that tests it."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote_plus


def api_credential(headers: Mapping[str, str], query: str) -> tuple[str | None, str | None]:
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


def basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
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


def same_credentials(presented: tuple[str | None, str | None], expected: tuple[str | None, str | None]) -> bool:
    """Constant-time comparison of credential pairs, as a real server must do."""
    return all(
        a is not None and b is not None and secrets.compare_digest(a.encode(), b.encode())
        for a, b in zip(presented, expected, strict=True)
    )


def s256(verifier: str) -> str:
    """PKCE's S256 challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
