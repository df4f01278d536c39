"""The ``bench/`` scripts the README's figures come from still run, at their smallest sizes: a figure that cannot
be reproduced is not a figure. Each runs in a process of its own, as documented; what it measures is not checked
here (timed tests are no place for figures), only that it gets to its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, expect: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in expect, done.stderr[-3000:]
    return done.stdout


def test_the_token_read_bench_reports_every_shape_against_its_floor() -> None:
    report = run_bench("token_read_bench.py", "--iterations", "10")
    assert "client on CPU 0" in report  # pinned (bench/timing.pin_cpus)
    assert report.count("ratio") >= 5


def test_the_token_fetch_bench_reports_every_stage_against_its_floor_warm_and_with_cold_caches() -> None:
    report = run_bench("token_fetch_bench.py", "--iterations", "10", "--cold-calls", "10")
    warm, cold = report.split("with cold caches")
    assert "client on CPU 0" in warm  # pinned (bench/timing.pin_cpus)
    assert warm.count("ratio") >= 5
    assert "recording a use" in warm
    assert cold.count("ratio") == 5
    assert "x warm" in cold


def test_the_cold_start_bench_reports_both_functions() -> None:
    report = run_bench("cold_start_bench.py", "--rounds", "1")
    assert "token_fetch" in report
    assert "authorizer" in report
    assert report.count("page faults") == 2  # each import's, which show the frame stack being remapped


def test_the_refresh_bench_reports_a_run_and_the_cpu_of_everything_in_it() -> None:
    # Too few connections for the ratio target (exit 1): the report is what counts here.
    report = run_bench("refresh_bench.py", "--connections", "40", "--timeout", "240", expect=(0, 1))
    assert "provider calls / conn  1.0000" in report
    assert "database, providers" in report
    assert "refresh-token reuse    0" in report
