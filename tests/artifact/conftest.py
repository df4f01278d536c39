"""Fixtures of the artifact tests: the built bundle and a Python 3.12 that sees none of our venv
(``tests/support/sam_build.py``), and moto as a server (``tests/support/moto_server.py``), so that the built
functions, running in child processes, reach the keys of the suite.

The fallback for ``sam local invoke`` (``tests/sam_local`` runs the real one where Docker can run): each built
function runs in ``python3.12 -I -S`` with only its build directory and the built layer on ``sys.path``, the way
``/var/task`` and ``/opt/python`` are all a deployed function has. A dependency missing from the layer fails here,
not in the first deploy.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infrastructure.cfn import Template
from tests.support.database import TestDatabase

DRIVER = Path(__file__).with_name("driver.py")
LAYER = "CommonLayer"
# A sampled-out X-Ray header, as Lambda sets per invocation: the Tracer runs its real code path (and so needs
# aws_xray_sdk from the layer) without any daemon to send segments to.
TRACE_HEADER = "Root=1-65a3b0c1-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0"


@dataclass(frozen=True)
class Invocation:
    returncode: int
    results: list[Any]
    """The handler's return value for each event, in order."""
    stdout: str
    """What the function printed: Powertools' JSON log lines and EMF metrics."""
    stderr: str


@dataclass(frozen=True)
class BuiltFunctions:
    """Invokes a built function in a fresh interpreter, with the template's environment and the suite's
    database and KMS key."""

    build_dir: Path
    template: Template
    python: str
    environment: dict[str, str]
    """What the test environment gives every function on top of the template's literal variables."""
    workdir: Path

    def invoke(
        self,
        function: str,
        *events: dict[str, Any],
        with_layer: bool = True,
        env: dict[str, str] | None = None,
    ) -> Invocation:
        """Run ``function`` (its logical id) on ``events`` in one process, as consecutive warm invocations.

        Each invocation starts with the function's full ``Timeout`` from the template ahead of it.
        """
        name = f"connvault-dev-{function}"
        code_dir = self.build_dir / function
        run_id = uuid.uuid4().hex
        request, results = self.workdir / f"{run_id}-request.json", self.workdir / f"{run_id}-results.json"
        context = {
            "function_name": name,
            "invoked_function_arn": f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
            "memory_limit_in_mb": 512,
            "aws_request_id": str(uuid.uuid4()),
            "log_stream_name": f"2025/01/14/[$LATEST]{run_id}",
            "remaining_ms": int(self.template.function_property(function, "Timeout")) * 1000,
        }
        request.write_text(json.dumps({"events": list(events), "context": context}), encoding="utf-8")
        lambda_env = {
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "_X_AMZN_TRACE_ID": TRACE_HEADER,
        }
        template_env = {k: v for k, v in self.template.environment(function).items() if isinstance(v, str)}
        layer = str(self.build_dir / LAYER / "python") if with_layer else "-"
        result = subprocess.run(
            [self.python, "-I", "-S", str(DRIVER), str(code_dir), layer, str(request), str(results)],
            env={**template_env, **self.environment, **lambda_env, **(env or {})},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        answers = json.loads(results.read_text(encoding="utf-8")) if result.returncode == 0 else []
        return Invocation(result.returncode, answers, result.stdout, result.stderr)


def stand_in_environment(database_url: str, kms_key_id: str, moto_endpoint: str) -> dict[str, str]:
    """Stand-ins for the template's references (database, key, callback) and for Lambda's own variables."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL_KMS": moto_endpoint,
        "CONNVAULT_DATABASE_URL": database_url,
        "CONNVAULT_KMS_KEY_ID": kms_key_id,
        "CONNVAULT_CALLBACK_URL": "http://127.0.0.1:3000/oauth/callback",
    }


@pytest.fixture
def built(
    sam_build: Path,
    built_template: Template,
    python312: str,
    database: TestDatabase,
    kms_key_id: str,
    moto_endpoint: str,
    tmp_path: Path,
) -> BuiltFunctions:
    environment = stand_in_environment(database.app_url, kms_key_id, moto_endpoint)
    return BuiltFunctions(sam_build, built_template, python312, environment, tmp_path)
