"""What a cold start imports (issue 14.3, the part done): with tracing off no tracer is built, so neither the
authorizer nor token fetch imports ``aws_xray_sdk`` (which builds a botocore client at import, ~200 ms); the
authorizer imports neither SQLAlchemy's ORM nor pydantic. Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("aws_xray_sdk", "sqlalchemy.orm", "pydantic")


def imported_after_loading(job: str, *, tracing: bool) -> set[str]:
    """The heavy modules loaded by importing ``functions/<job>/app.py`` as Lambda would, tracing on or off."""
    code = (
        "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import app; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / job),
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
    }
    env.pop("AWS_SAM_LOCAL", None)
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "layers" / "common"), str(REPO / "functions" / job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_authorizer_imports_no_tracer_orm_or_pydantic_with_tracing_off() -> None:
    assert imported_after_loading("authorizer", tracing=False) == set()


@pytest.mark.parametrize("job", ["token_fetch", "api", "oauth_callback"])
def test_http_functions_build_no_tracer_with_tracing_off(job: str) -> None:
    assert "aws_xray_sdk" not in imported_after_loading(job, tracing=False)


def test_with_tracing_on_the_http_functions_are_traced() -> None:
    assert "aws_xray_sdk" in imported_after_loading("token_fetch", tracing=True)
