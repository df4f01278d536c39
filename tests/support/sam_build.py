"""The built bundle, shared by every test that runs it (``tests/artifact``, ``tests/sam_local``): one ``make
sam-build`` per test run, for this machine's architecture, and the Python 3.12 the Makefile builds it with.

A pytest plugin (``pytest_plugins`` in tests/conftest.py), so that both directories see the same fixtures.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from devserver.template import load_template
from tests.infrastructure.cfn import REPO, Template

ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def machine_architecture() -> str:
    """This machine's architecture in the template's terms (``Architecture`` parameter)."""
    return ARCHITECTURES[platform.machine().lower()]


def python312_command() -> list[str]:
    """The Makefile's choice of interpreter: $PYTHON312, else pyenv's 3.12.1, else python3.12 on PATH."""
    if os.environ.get("PYTHON312"):
        return shlex.split(os.environ["PYTHON312"])
    pyenv = ["env", "PYENV_VERSION=3.12.1", "python3.12"]
    probe = subprocess.run([*pyenv, "--version"], capture_output=True, check=False)
    return pyenv if probe.returncode == 0 else ["python3.12"]


@pytest.fixture(scope="session")
def python312() -> str:
    """The interpreter's own path, so each child skips the pyenv shim."""
    result = subprocess.run(
        [*python312_command(), "-I", "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def sam_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make sam-build`` for this machine's architecture, once per test run however many xdist workers ask.

    The first worker builds under an exclusive lock and records the outcome; the others wait on the lock and
    read it. Building the tool venv (.venv-sam) on first use adds about 50 s; the build itself takes 15-25 s.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    build_dir, outcome = shared / "sam-build", shared / "sam-build.json"
    with (shared / "sam-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not outcome.exists():
            started = time.monotonic()
            result = subprocess.run(
                [
                    "make",
                    "--no-print-directory",
                    "sam-build",
                    f"SAM_ARCH={machine_architecture()}",
                    f"SAM_BUILD_DIR={build_dir}",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            record = {
                "returncode": result.returncode,
                "seconds": round(time.monotonic() - started, 1),
                "output": f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            }
            outcome.write_text(json.dumps(record), encoding="utf-8")
    record = json.loads(outcome.read_text(encoding="utf-8"))
    assert record["returncode"] == 0, record["output"]
    return build_dir


@pytest.fixture(scope="session")
def built_template(sam_build: Path) -> Template:
    return Template(load_template(sam_build / "template.yaml"))
