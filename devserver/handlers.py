"""The Lambda functions of ``functions/<job>/app.py``, loaded and invoked the way the Lambda runtime does.

One implementation for ``make run`` and the tests, so both call exactly what a deployment runs. The runtime
imports a function's ``app.py`` as module ``app`` once per instance and then calls ``handler`` one event at a
time; handlers rely on that (Powertools' resolver keeps the current event on the app object), so ``invoke``
runs one event per function at a time: a local stand-in for one warm instance of each function.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
INTEGRATION_TIMEOUT_MS = 30_000
"""API Gateway's HTTP API integration limit: no request-path function gets more time than this."""

type Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

_import_lock = threading.Lock()
_instance_locks: dict[str, threading.Lock] = {}


def load_handler(job: str) -> Handler:
    """``functions/<job>/app.py``'s ``handler``, imported once (as Lambda imports it) under its own module name."""
    name = f"connvault_fn_{job}"
    with _import_lock:
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, FUNCTIONS / job / "app.py")
            if spec is None or spec.loader is None:
                raise ModuleNotFoundError(f"no function named {job!r} under {FUNCTIONS}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return sys.modules[name].handler


@dataclass(frozen=True)
class InvocationContext:
    """The fields of Lambda's context object that Powertools and the handlers read; the remaining time counts
    down for real. The one stand-in for the devserver, the tests and the benches."""

    function_name: str = "connvault-local"
    aws_request_id: str = "local"
    memory_limit_in_mb: int = 512
    remaining_ms: int = INTEGRATION_TIMEOUT_MS
    log_stream_name: str = "local"
    started_at: float = field(default_factory=time.monotonic)

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` at which Lambda would stop the function."""
        return self.started_at + self.remaining_ms / 1000

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def invoke(job: str, event: dict[str, Any]) -> dict[str, Any]:
    """Call ``job``'s handler with ``event``, one event at a time per function."""
    handler = load_handler(job)
    with _import_lock:
        lock = _instance_locks.setdefault(job, threading.Lock())
    request_id = event.get("requestContext", {}).get("requestId", "local")
    with lock:
        return handler(event, InvocationContext(function_name=job, aws_request_id=request_id))
