"""``@once``: one build however many threads ask at once, and a reset that disposes of what was built."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from connvault.once import once


def test_threads_arriving_together_share_one_build() -> None:
    builds: list[object] = []
    start = threading.Barrier(16)

    @once
    def shared() -> object:
        time.sleep(0.05)  # long enough that every thread arrives while the first is building
        builds.append(object())
        return builds[-1]

    def ask() -> object:
        start.wait()
        return shared()

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda _: ask(), range(16)))
    assert len(builds) == 1
    assert all(value is builds[0] for value in got)


def test_cache_clear_disposes_of_the_built_value_and_the_next_call_builds_again() -> None:
    disposed: list[list[int]] = []
    counter = iter(range(10))

    @once
    def shared() -> list[int]:
        return [next(counter)]

    shared.cache_clear(disposed.append)  # nothing built: nothing to dispose of
    assert disposed == []
    first = shared()
    shared.cache_clear(disposed.append)
    assert disposed == [first]
    assert shared() == [1]
