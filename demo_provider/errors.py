"""The one exception inside the demo provider: an OAuth error answer, raised by the grant logic and written by the
HTTP handler."""

from __future__ import annotations


class TokenError(Exception):
    """An OAuth error answer (RFC 6749 §5.2) raised inside the token logic."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
