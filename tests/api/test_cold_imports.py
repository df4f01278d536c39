"""What a cold start imports and opens (issue 14.3): with tracing off no tracer is built, so no function imports
``aws_xray_sdk`` (which builds a botocore client at import, ~200 ms); neither the authorizer nor token fetch imports
SQLAlchemy's ORM or pydantic (token fetch's refresh path loads them when a refresh is due); and token fetch's first
request opens one database connection. Imports are checked in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pg8000.core import CoreConnection

from connvault import wiring
from tests.api.conftest import connect_account

if TYPE_CHECKING:
    from tests.api.conftest import Api

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("aws_xray_sdk", "sqlalchemy.orm", "pydantic")


def imported_after_loading(job: str, *, tracing: bool, watched: tuple[str, ...] = HEAVY) -> set[str]:
    """The ``watched`` modules loaded by importing ``functions/<job>/app.py`` as Lambda would, tracing on or off."""
    code = f"import app; print(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    return set(json.loads(run_in_function(job, code, tracing=tracing)))


def page_faults_importing(job: str, depth: int) -> int:
    """The minor page faults of importing ``functions/<job>/app.py`` from ``depth`` nested calls."""
    code = (
        "import resource\n"
        "def deep(n): return deep(n - 1) if n else __import__('app')\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        f"deep({depth})\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)"
    )
    return int(run_in_function(job, code, tracing=False))


def run_in_function(job: str, code: str, *, tracing: bool) -> str:
    """The last line ``code`` prints in a fresh interpreter set up as Lambda sets up ``functions/<job>``."""
    prelude = "import sys, json; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
    env = {
        **os.environ,
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / job),
        "POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true",
    }
    env.pop("AWS_SAM_LOCAL", None)
    done = subprocess.run(
        [sys.executable, "-c", prelude + code, str(REPO / "layers" / "common"), str(REPO / "functions" / job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("job", ["authorizer", "token_fetch"])
def test_the_authorizer_and_token_fetch_import_no_tracer_orm_or_pydantic_with_tracing_off(job: str) -> None:
    assert imported_after_loading(job, tracing=False) == set()


def test_the_authorizer_builds_none_of_the_domain_models() -> None:
    """It reads an API key and a tenant: the models' dataclasses were a third of its own import time."""
    assert imported_after_loading("authorizer", tracing=False, watched=("connvault.models",)) == set()


def test_token_fetch_does_not_load_the_key_checks() -> None:
    """It reads the authorizer's verdict, never an API key (``api/context_keys.py``)."""
    watched = ("connvault.services.auth", "connvault.api_keys")
    assert imported_after_loading("token_fetch", tracing=False, watched=watched) == set()


def test_token_fetch_does_not_load_what_renews_without_the_end_user() -> None:
    """Grants, their clients and keys, and a token endpoint's parsed answer are built by a refresh, or read from a
    connection that holds a grant; their classes cost ~7 ms of its cold start (``token_grants``)."""
    watched = ("connvault.token_grants", "connvault.oauth.tokens")
    assert imported_after_loading("token_fetch", tracing=False, watched=watched) == set()


@pytest.mark.parametrize("job", ["authorizer", "token_fetch"])
def test_the_authorizer_and_token_fetch_import_alike_at_any_depth(job: str) -> None:
    """Lambda's bootstrap, not connvault, decides the depth a cold start's import begins at. Begun at some depths,
    CPython 3.12 mapped and unmapped a frame-stack chunk thousands of times in the middle of it (7,300 to 10,300
    page faults for token fetch here); with room of their own (``connvault.frame_room``) every depth costs the
    same, to a few dozen."""
    page_faults_importing(job, 0)  # compiles whatever bytecode is missing
    faults = [page_faults_importing(job, depth) for depth in range(0, 64, 7)]
    assert max(faults) - min(faults) < 400, faults


@pytest.mark.parametrize("job", ["api", "oauth_callback"])
def test_http_functions_build_no_tracer_with_tracing_off(job: str) -> None:
    assert "aws_xray_sdk" not in imported_after_loading(job, tracing=False)


def test_with_tracing_on_the_http_functions_are_traced() -> None:
    assert "aws_xray_sdk" in imported_after_loading("token_fetch", tracing=True)


def test_the_first_token_fetch_of_a_process_opens_one_database_connection(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The salt of the tenant's key comes through the same prepared-statement connection as the read, not through a
    second (SQLAlchemy) one."""
    connection_id = connect_account(api)
    wiring.reset()  # as a new process: no engine, no fast-read connection, no data keys, no salts
    opened: list[str] = []
    original = CoreConnection.__init__

    def counting(self: CoreConnection, *args: Any, **kwargs: Any) -> None:
        opened.append(type(self).__module__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CoreConnection, "__init__", counting)

    answer = api.call("GET", f"/connections/{connection_id}/token")

    assert answer.status == 200, answer.body
    api.secrets.add(answer.json()["access_token"])
    assert opened == ["pg8000.native"]
