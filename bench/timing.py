"""The one way the benchmarks time a call, so their ratios compare like with like."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterable
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
    fns: dict[str, Callable[[], Any]], iterations: int, rounds: int = ROUNDS, *, slice_calls: int = 50
) -> dict[str, float]:
    """Per-call time of each function, ``iterations`` x ``rounds`` calls each, interleaved finely: the calls are cut
    into slices of ``slice_calls`` and every function runs one slice in turn, so each function's slices are never more
    than a few milliseconds from the others'. The answer is the median of each function's slice means. This machine's
    speed drifts by twofold over seconds (a shared VM); coarse rounds of whole seconds put one function in a slow
    spell and the next in a fast one, fine slices put them in the same spell."""
    slices = max(1, iterations * rounds // slice_calls)
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(slices):
        for name, fn in fns.items():
            started = time.perf_counter()
            for _ in range(slice_calls):
                fn()
            results[name].append((time.perf_counter() - started) / slice_calls * 1e6)
    return {name: statistics.median(values) for name, values in results.items()}


def cold_per_call_us(fns: dict[str, Callable[[], Any]], calls: int, *, evict_bytes: int = 8 << 20) -> dict[str, float]:
    """Per-call time of each function called once with cold caches: before every call a scan of ``evict_bytes``
    (larger than this machine's caches) evicts what the call would find warm, as the wait for a database answer
    partly does on the real path; calls interleave as in ``interleaved_per_call_us``. The answer is each
    function's median call. A tight loop keeps a piece's code and data in the caches and times only its
    instructions; this times what touching them costs."""
    buffer = bytearray(evict_bytes)
    results: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            buffer.find(b"\x01")  # absent: every byte is read
            started = time.perf_counter_ns()
            fn()
            results[name].append(time.perf_counter_ns() - started)
    return {name: statistics.median(values) / 1000 for name, values in results.items()}


PIN_MODES = ("split", "same", "none")


def pin_cpus(database_pids: Iterable[int] | None, mode: str = "split") -> str:
    """Pin this process and the database's processes (``database.backend_pids``), and say how.

    Unpinned on two cores, a round trip costs 27 µs or 85 µs depending on whether the scheduler put the backend
    on this process's CPU or the other, and it moves between runs, so two connections of one run can differ
    threefold for the same statement. ``split`` (the default) puts this process on the first CPU and the
    database on the last, as a database on another host would be: every round trip crosses CPUs. ``same`` puts
    all on the first CPU (round trips cheapest, Python's own cost weighs most); ``none`` leaves the scheduler be.
    ``database_pids`` None: an external server, which cannot be pinned from here."""
    if mode == "none" or database_pids is None or not hasattr(os, "sched_setaffinity"):
        return "unpinned"
    last = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {0})
    for pid in database_pids:
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            os.sched_setaffinity(pid, {0 if mode == "same" else last})
    return "client and database on CPU 0" if mode == "same" else f"client on CPU 0, database on CPU {last}"


def warm_bench_options(
    description: str, iterations: int, more: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    """The options every warm-path bench takes: calls per stage and round (``--iterations``) and ``--pin``; ``more``
    adds a bench's own."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=iterations)
    parser.add_argument("--pin", choices=PIN_MODES, default="split", help="CPU placement (see pin_cpus)")
    if more is not None:
        more(parser)
    return parser.parse_args()
