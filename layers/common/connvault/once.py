"""``@once``: a process's shared collaborator (a KMS client, the sealer, an engine, a pool), built on first use by
exactly one thread.

``functools.lru_cache`` on a getter builds on first use too, but every thread that arrives before the first build
finishes builds its own: a scheduled refresh starts sixteen threads at once, and each built a boto3 KMS client
(about 100 ms of CPU apiece, a measured two seconds at the start of every cold run) and could build its own engine
or statement pool, each with its own database connections. Here the first caller builds under a lock while the
others wait for it; once built, a call is one attribute read.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable


class Lazy[T]:
    """The value ``factory`` builds, built once; ``cache_clear()`` forgets it (tests, a changed environment)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._box: tuple[T] | None = None
        functools.update_wrapper(self, factory)

    def __call__(self) -> T:
        box = self._box
        if box is None:
            with self._lock:
                box = self._box
                if box is None:
                    box = self._box = (self._factory(),)
        return box[0]

    def cache_clear(self, dispose: Callable[[T], object] | None = None) -> None:
        """Forget the value, handing it to ``dispose`` first if one was built (to close its connections)."""
        with self._lock:
            box, self._box = self._box, None
        if box is not None and dispose is not None:
            dispose(box[0])


def once[T](factory: Callable[[], T]) -> Lazy[T]:
    return Lazy(factory)
