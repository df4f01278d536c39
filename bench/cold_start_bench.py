"""Cold import of the token fetch and authorizer handlers vs the libraries each truly needs, in the same run.

Each measurement is a fresh interpreter (bytecode precompiled first, as the deployed layer ships it) importing one
thing, with the function's own directory on the path as Lambda puts it, and tracing off as outside X-Ray; the
interpreter times its own import, so neither its start nor its exit (which Lambda's cold start does not include,
and which varied by tens of milliseconds between runs here) is in the figure. Each round runs a function's two
imports back to back, in alternating order, so both meet the same spell of this shared machine (its speed drifts
by tens of percent over seconds); the ratio is the median of the rounds' ratios.

The libraries each function truly needs at import (what its warm path calls):

* token fetch: Powertools' logger and metrics with orjson (which writes the log lines and the answer),
  pg8000's native driver (the prepared read), ``cryptography``'s AES-GCM (opening the envelope) and boto3 (KMS, for
  a data key not cached yet);
* authorizer: Powertools' logger and metrics with orjson (the log lines), and pg8000's native driver (the key
  lookup).

Each line also gives the median minor page faults of both imports: memory first touched, or mapped anew. A handler
taking thousands more than its libraries is remapping memory (as CPython 3.12's frame stack did at a chunk boundary
inside a deep import chain: docs/design.md, cold starts).

Run: ``.venv/bin/python bench/cold_start_bench.py [--rounds 15]``
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "common"
POWERTOOLS = "import aws_lambda_powertools.logging, aws_lambda_powertools.metrics, orjson, pg8000.native"
SUBJECTS = {
    "token_fetch": ("token_fetch", f"{POWERTOOLS}, cryptography.hazmat.primitives.ciphers.aead, boto3"),
    "authorizer": ("authorizer", POWERTOOLS),
}


def timed(code: str, function: str) -> tuple[float, int]:
    """The import's seconds and the minor page faults it took (memory first touched, or mapped anew)."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'functions' / function}:{LAYER}",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / function),
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    env.pop("AWS_SAM_LOCAL", None)
    timed_import = (
        "import time, resource; faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt; "
        f"started = time.perf_counter(); {code}; elapsed = time.perf_counter() - started; "
        "print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)"
    )
    done = subprocess.run([sys.executable, "-c", timed_import], check=True, env=env, capture_output=True, text=True)
    seconds, faults = done.stdout.split()
    return float(seconds), int(faults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(LAYER, quiet=1)
    compileall.compile_dir(ROOT / "functions", quiet=1)
    handlers: dict[str, list[tuple[float, int]]] = {name: [] for name in SUBJECTS}
    libraries: dict[str, list[tuple[float, int]]] = {name: [] for name in SUBJECTS}
    for round_ in range(args.rounds):
        for name, (function, needed) in SUBJECTS.items():
            # Back to back, in alternating order: the pair shares whatever spell the machine is in.
            pair = [("handler", "import app"), ("libraries", needed)]
            for kind, code in pair if round_ % 2 == 0 else reversed(pair):
                (handlers if kind == "handler" else libraries)[name].append(timed(code, function))
    load = os.getloadavg()[0]
    print(
        f"cold import, {args.rounds} rounds, each import timed by its own interpreter; "
        "ratio: median of each round's handler / libraries"
    )
    print(f"  machine load (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
    for name in SUBJECTS:
        ratios = [h / n for (h, _), (n, _) in zip(handlers[name], libraries[name], strict=True)]
        print(
            f"  {name:12s} handler {statistics.median(s for s, _ in handlers[name]) * 1000:6.0f} ms  "
            f"libraries {statistics.median(s for s, _ in libraries[name]) * 1000:6.0f} ms  "
            f"ratio {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)  "
            f"page faults {statistics.median(f for _, f in handlers[name]):.0f} / "
            f"{statistics.median(f for _, f in libraries[name]):.0f}"
        )


if __name__ == "__main__":
    main()
