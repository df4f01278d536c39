"""One way to try an action again: a fixed number of attempts, for the failures named, with a bounded backoff.

Used wherever a failure is worth one more try (a store after the provider answered, a grant whose code cannot be
exchanged twice, a prepared read whose connection died while the Lambda was frozen), so that each caller states
only what it retries and how long it waits, and tests pass their own ``sleep``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def no_wait(_attempt: int) -> float:
    return 0.0


def doubling(first: float, cap: float) -> Callable[[int], float]:
    """Waits of ``first``, twice that, … after each failed attempt, never longer than ``cap``."""
    return lambda attempt: min(first * 2 ** (attempt - 1), cap)


def retry[T](
    action: Callable[[], T],
    *,
    attempts: int,
    on: tuple[type[BaseException], ...],
    wait: Callable[[int], float] = no_wait,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action()``, tried up to ``attempts`` times while it raises one of ``on``; the last failure propagates.
    ``wait(n)`` is the pause after the ``n``-th failed attempt. Anything not in ``on`` propagates at once."""
    for attempt in range(1, attempts):
        try:
            return action()
        except on:
            pause = wait(attempt)
            if pause > 0:
                sleep(pause)
    return action()
