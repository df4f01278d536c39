"""Provider logos for the connect page, shipped with connvault: ``logos/<slug>.svg`` for catalog providers, and
a generated monogram for any other (a tenant's custom provider, the devserver's demo providers).

The page shows them as ``data:`` images, so it loads nothing from anywhere: an SVG drawn as an image runs no
script and fetches nothing, whatever it contains. The shipped files are plain marks in each provider's colour;
replace them with the providers' own artwork, under their brand rules, in a deployment that wants it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from html import escape
from pathlib import Path

from connvault.catalog.loader import SLUG_PATTERN

LOGO_DIR = Path(__file__).resolve().parent / "logos"


@lru_cache(maxsize=256)
def logo_data_uri(slug: str, display_name: str) -> str:
    """The provider's logo as a ``data:image/svg+xml`` URI."""
    path = LOGO_DIR / f"{slug}.svg"
    svg = path.read_bytes() if SLUG_PATTERN.match(slug) and path.is_file() else monogram(slug, display_name)
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def monogram(slug: str, display_name: str) -> bytes:
    """A rounded square in a colour derived from the slug, with the name's first letter."""
    hue = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:2], "big") % 360
    letter = escape(next((char for char in display_name if char.isalnum()), "?").upper())
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 48 48" width="48" height="48" role="img">'
        f'<rect width="48" height="48" rx="12" fill="hsl({hue}, 55%, 38%)"/>'
        '<text x="24" y="24" dy="0.35em" text-anchor="middle" font-family="system-ui, sans-serif" '
        f'font-size="22" font-weight="700" fill="#fff">{letter}</text></svg>'
    ).encode()
