"""Time as an injectable function, so services and tests agree on "now" without patching globals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime; naive datetimes are never used."""
    return datetime.now(UTC)
