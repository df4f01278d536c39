"""The one way the benchmarks time a call, so their ratios compare like with like."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def per_call_us(fn: Callable[[], Any], iterations: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(results)
