"""``sam local`` as the tests drive it: ``invoke`` (many at once) and ``start-api``, on a template and an image
that conftest.py prepares, with the suite's services reachable from the containers (``bridge_url``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.infrastructure.cfn import REPO
from tests.support.sam_build import machine_architecture
from tests.support.tcp_forward import Forwarder, tcp_socket

SAM = REPO / ".venv-sam" / "bin" / "sam"
# Invocations at once: each is a SAM CLI process (about a second of CPU to start) and a container importing its
# handler; more than this only queues on two cores.
PARALLEL_INVOKES = int(os.environ.get("SAM_LOCAL_PARALLEL", "4"))


def bridge_url(url: str, host: str, stack: contextlib.ExitStack) -> str:
    """``url``, of a server on loopback, as a container reaches it: through a forwarder on the bridge address
    ``host`` that lives as long as ``stack``."""
    parts = urlsplit(url)
    forwarder = stack.enter_context(Forwarder(host, tcp_socket(parts.hostname or "", parts.port or 80)))
    return parts._replace(netloc=f"{host}:{forwarder.port}").geturl()


@dataclass(frozen=True)
class Invoked:
    """What one ``sam local invoke`` printed: the handler's answer on stdout, SAM's and the function's logs on
    stderr."""

    function: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def answer(self) -> Any:
        assert self.returncode == 0 and self.stdout.strip(), (
            f"{self.function} gave no answer after {self.seconds:.0f} s: {self.stderr[-4000:]}"
        )
        return json.loads(self.stdout)


@dataclass(frozen=True)
class Invocation:
    function: str
    event: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    """Variables for this invocation on top of the shared ones."""


@dataclass(frozen=True)
class StartedApi:
    url: str
    log: Path
    """What SAM and the functions behind it printed."""


@dataclass(frozen=True)
class SamLocal:
    """Runs ``sam local invoke`` on the local template, in the run image, with the suite's services bridged."""

    template: Path
    image: str
    env: dict[str, str]
    """What every function gets on top of the template's variables: the deployment's settings, pointed here."""
    sam_env: dict[str, str]
    """SAM CLI's own environment: fake credentials and loopback endpoints, nothing of this process's."""
    bridge_host: str
    """Where a container finds this machine (see ``bridge_url``)."""
    workdir: Path

    def _command(self, command: str, *args: str, env: dict[str, str], workdir: Path) -> list[str]:
        """``sam local <command>`` with what every command here shares; ``env`` goes to the functions."""
        workdir.mkdir()
        (workdir / "env.json").write_text(json.dumps({"Parameters": self.env | env}), encoding="utf-8")
        return [
            str(SAM),
            "local",
            command,
            *args,
            "--template-file",
            str(self.template),
            "--env-vars",
            str(workdir / "env.json"),
            "--parameter-overrides",
            f"Architecture={machine_architecture()}",
            "--invoke-image",
            self.image,
            "--skip-pull-image",
            "--layer-cache-basedir",
            str(workdir / "layers"),
        ]

    def _process_env(self, workdir: Path) -> dict[str, str]:
        # A temporary directory of its own: SAM keeps lock files there, which a killed run would leave behind.
        return self.sam_env | {"TMPDIR": str(workdir)}

    def invoke(self, invocation: Invocation) -> Invoked:
        workdir = self.workdir / uuid.uuid4().hex
        event = workdir / "event.json"
        command = self._command(
            "invoke", invocation.function, "--event", str(event), env=invocation.env, workdir=workdir
        )
        event.write_text(json.dumps(invocation.event), encoding="utf-8")
        started = time.monotonic()
        result = subprocess.run(
            command,
            env=self._process_env(workdir),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        seconds = time.monotonic() - started
        return Invoked(invocation.function, result.returncode, result.stdout, result.stderr, seconds)

    def invoke_all(self, invocations: dict[str, Invocation]) -> dict[str, Invoked]:
        """Every invocation, ``PARALLEL_INVOKES`` at a time; answers by the same keys.

        The first runs alone: it has SAM add its emulator to the run image, which the others then reuse (SAM's
        own guard against parallel builds keeps its locks in TMPDIR, separate per invocation here).
        """
        first, *rest = invocations
        answers = {first: self.invoke(invocations[first])}
        with ThreadPoolExecutor(max_workers=PARALLEL_INVOKES) as pool:
            running = {name: pool.submit(self.invoke, invocations[name]) for name in rest}
            return answers | {name: future.result() for name, future in running.items()}

    @contextlib.contextmanager
    def start_api(self) -> Iterator[StartedApi]:
        """``sam local start-api`` on a free port of 127.0.0.1, containers kept warm between requests. SAM
        removes its containers when it is interrupted at the end."""
        workdir = self.workdir / uuid.uuid4().hex
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = self._command(
            "start-api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--warm-containers",
            "LAZY",
            "--no-watch",
            env={},
            workdir=workdir,
        )
        log = workdir / "start-api.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                command, env=self._process_env(workdir), cwd=workdir, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_for_port(port, process, log)
            yield StartedApi(f"http://127.0.0.1:{port}", log)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"sam local start-api exited: {log.read_text()[-4000:]}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"sam local start-api did not listen within {timeout} s: {log.read_text()[-4000:]}")
