"""Standard Webhooks signing (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one ``v1,`` entry per live secret.

Written here rather than imported: it is the spec's three lines over ``hmac``, and the tests verify what it
produces with the ``standardwebhooks`` library, which an independent implementation makes a real check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from connvault.redacted import Redacted

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> Redacted[str]:
    """A signing secret as Standard Webhooks libraries take it: ``whsec_`` and 256 random bits in base64."""
    return Redacted(SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())


def signature_headers(message_id: str, timestamp: int, body: bytes, keys: list[Redacted[str]]) -> dict[str, str]:
    """The three headers of one attempt. ``timestamp`` is the attempt's (seconds), not the event's: receivers
    refuse messages older than a few minutes, and a retry is a new message with the same id."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for key in keys:
        raw = base64.b64decode(key.reveal().removeprefix(SECRET_PREFIX))
        digest = hmac.new(raw, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": " ".join(signatures)}
