"""Shared pieces of the OAuth tests: the redirect URI, and what a finished authorization looks like."""

from __future__ import annotations

from dataclasses import dataclass

REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
"""Never contacted: the tests read the provider's redirect instead of following it."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where the provider sent the browser back, and the values the client made for the request."""

    params: dict[str, str]
    state: str
    verifier: str | None

    @property
    def code(self) -> str:
        return self.params["code"]
