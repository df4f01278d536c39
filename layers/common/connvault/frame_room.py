"""A cold start's imports, run from a frame at the base of a frame-stack chunk with room for all of them.

CPython 3.11+ keeps Python frames in chunks of 16 KB that it maps when a call does not fit and unmaps when the
first frame of a chunk returns. Recursive code running just across a chunk's end therefore maps and unmaps it on
every call: compiling urllib3's URL regexes (a recursive compiler) deep inside connvault's import chain did that
about 2,600 times, 10,600 page faults for token fetch's import against 7,000 for its libraries alone. Where the
boundaries fall depends on the depth the import starts at, which is Lambda's bootstrap's, not ours: the same
import cost 7,300 to 10,300 page faults started at different depths here.

``import_with_room`` calls the import from a frame too big for any ordinary chunk, so CPython gives it a chunk of
its own, sized to the next power of two: 1 MiB, half of it free for the frames the import calls. The whole import
chain then runs in one mapped chunk whatever depth it starts at (docs/design.md, cold starts). Unused room costs
address space, not memory: only pages a frame touches are faulted in.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_ROOM_WORDS = 1 << 16
"""The big frame's value-stack size in pointers (512 KiB): CPython rounds its chunk up to 1 MiB."""


def import_with_room(name: str) -> ModuleType:
    """Import ``name`` (and everything it imports) from the base of a 1 MiB frame-stack chunk."""
    return importlib.import_module(name)


# The frame's declared value stack is never touched beyond what the body uses; only its size matters.
import_with_room.__code__ = import_with_room.__code__.replace(co_stacksize=_ROOM_WORDS)
