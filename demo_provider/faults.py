"""Scripted failures: what the next request to a path gets instead of (or after) its normal answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from demo_provider.records import Headers


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer, consumed by the next request to the path it was injected for.

    ``status=None`` means "answer normally", after ``delay_seconds``.
    """

    status: int | None = None
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = ()
    delay_seconds: float = 0.0
    drop_connection: bool = False

    @classmethod
    def error(cls, status: int, code: str, headers: Headers = ()) -> Fault:
        return cls(status=status, body=json.dumps({"error": code}).encode(), headers=headers)

    @classmethod
    def server_error(cls) -> Fault:
        return cls(status=500, body=b'{"error": "server_error"}')

    @classmethod
    def rate_limited(cls, retry_after: str) -> Fault:
        return cls(status=429, body=b'{"error": "rate_limited"}', headers=(("Retry-After", retry_after),))

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(delay_seconds=seconds)

    @classmethod
    def dropped(cls) -> Fault:
        return cls(drop_connection=True)

    @classmethod
    def garbage(cls) -> Fault:
        return cls(status=200, body=b"<html>\x00\xff upstream exploded", content_type="text/html")
