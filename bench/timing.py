"""The one way the benchmarks time a call, so their ratios compare like with like."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

ROUNDS = 5


def per_call_us(fn: Callable[[], Any], iterations: int, rounds: int = ROUNDS) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(results)


def interleaved_per_call_us(
    fns: dict[str, Callable[[], Any]], iterations: int, rounds: int = ROUNDS
) -> dict[str, float]:
    """``per_call_us`` of each function, with the rounds interleaved: round r runs every function once in turn, so a
    noisy moment of a shared machine weighs on all of them alike."""
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(iterations):
                fn()
            results[name].append((time.perf_counter() - started) / iterations * 1e6)
    return {name: statistics.median(values) for name, values in results.items()}
