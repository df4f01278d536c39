"""JSON text exactly as the standard library writes it, written by orjson whenever that is the same text.

Two writers sit on the token fetch's path: its answer (``json.dumps`` with compact separators, what the resolver
writes) and, at INFO, its access line (Powertools' serializer: compact, ``ensure_ascii=False``, ``default=str``).
orjson writes either in a fraction of the time (docs/design.md: 15-16 µs of a warm fetch for the answer, 23-45 µs
for the access line), and the same text for strings, integers, booleans, None, and dicts, lists and tuples of them.
Anything else is written by ``json`` as before: floats (orjson writes ``1e-05`` as ``0.00001``, NaN as ``null``),
enums, UUIDs, datetimes, any other object, and what orjson refuses (an integer past 64 bits, a lone surrogate, a key
that is not a string). ``tests/unit/test_json_text.py`` compares both writers with ``json`` over every ASCII
character and those values.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson

_compact_ascii = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(…, separators=…)`` with its encoder built once: ``dumps`` builds one per call when given options."""
_compact_unicode = functools.partial(json.dumps, default=str, separators=(",", ":"), ensure_ascii=False)
"""Powertools' own log serializer (``LambdaPowertoolsFormatter``, outside ``POWERTOOLS_DEV``)."""


def answer_json(body: Any) -> str:
    """``body`` as an HTTP answer: ``json.dumps`` with compact separators, non-ASCII and DEL escaped."""
    text = _by_orjson(body)
    return text if text is not None and text.isascii() and "\x7f" not in text else _compact_ascii(body)


def log_json(record: dict[str, Any]) -> str:
    """A log record as Powertools writes it (compact, non-ASCII as it is, ``str()`` of what JSON cannot hold)."""
    text = _by_orjson(record)
    return text if text is not None else _compact_unicode(record)


def _by_orjson(value: Any) -> str | None:
    """orjson's text for ``value`` when it is certainly ``json``'s (for ``json``'s escaping of what is not ASCII,
    see ``answer_json``), else None."""
    if not _plain(value):
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return None


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only what orjson and ``json`` write alike (exact types: an ``IntEnum`` is not). The
    scalars of a container are checked in its own loop: a call per value cost nearly three times as much."""
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return kind in _SCALARS
    for item in items:  # noqa: SIM110 - all() over a generator cost 4.5 µs where this loop costs 2.0
        if type(item) not in _SCALARS and not _plain(item):
            return False
    return True
