"""Fixtures of the sam-local tests: ``sam local invoke`` running the built bundle in Docker containers, against the
suite's own PostgreSQL and moto.

- **Docker**: ``make sam-local-docker`` (``dockerd.sh``) finds an engine or starts one (installing docker.io on a
  fresh machine). Where none can run, every test that needs it skips with the reason; ``tests/artifact`` stands in.
- **Image**: ``SAM_LOCAL_IMAGE`` picks the base: ``auto`` (default) takes the official Lambda image when it is
  already on this machine (nothing is pulled), else the local stand-in (``make sam-local-image``); ``official``
  lets Docker pull the official one; ``local`` always builds or reuses the stand-in. Each test run then bakes the
  built layer into ``/opt`` of a run image of its own (what SAM's per-invoke build would do, once per run, and
  free of races with other runs building the same SAM tag) and removes it at the end.
- **Network**: containers sit on Docker's default bridge, where SAM reaches each through a port published on
  127.0.0.1, and they reach only the host. The host's bridge address gets one forwarder per local service:
  PostgreSQL (the embedded server's Unix socket), moto (KMS and Secrets Manager) and the CloudFormation ResponseURL.
  No endpoint of a function points anywhere else: ``AWS_ENDPOINT_URL`` is moto's forwarder, and SAM's own
  account lookup (STS) goes to moto on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml

from devserver.local_env import FAKE_AWS
from devserver.template import load_template
from tests.infrastructure.cfn import REPO
from tests.sam_local.sam_cli import SAM, SamLocal, bridge_url
from tests.support.database import TestDatabase
from tests.support.sam_build import machine_architecture
from tests.support.tcp_forward import Forwarder, tcp_socket, unix_socket

TIMINGS = REPO / ".sam-local" / "timings.json"
OFFICIAL_IMAGE = "public.ecr.aws/lambda/python:3.12-{architecture}"
RUN_LABEL = "connvault.sam-local.run"
# A run image older than this belongs to a run that was killed before it could remove it.
STALE_RUN_IMAGE_SECONDS = 6 * 3600
# SAM counts a cold start's imports against the function's timeout (Lambda gives them an init phase of their own),
# and on a busy two-core machine a cold import alone can pass the 20 s of a request function.
INIT_ALLOWANCE_SECONDS = 60


def make(target: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def docker(*args: str, input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], input=input, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def docker_bridge() -> str:
    """The host's address on Docker's default bridge, once an engine answers (started here if need be).

    Docker records the bridge's gateway in its IPAM config only sometimes (Debian's docker.io 20.10 on a fresh
    machine recorded the subnet alone); unrecorded, it is the subnet's first address, which Docker gives the bridge."""
    started = make("sam-local-docker")
    if started.returncode != 0:
        reasons = [line for line in started.stderr.splitlines() if line.startswith("docker unavailable")]
        pytest.skip(reasons[-1] if reasons else f"docker unavailable: {started.stderr.strip()[-300:]}")
    bridge = docker("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}")
    assert bridge.returncode == 0 and bridge.stdout.split(), bridge.stderr
    *gateway, subnet = bridge.stdout.split()
    return gateway[0] if gateway else str(next(ipaddress.ip_network(subnet).hosts()))


@pytest.fixture(scope="session")
def base_image(docker_bridge: str) -> str:
    """The Lambda python3.12 base image to run on (see the module docstring for ``SAM_LOCAL_IMAGE``)."""
    choice = os.environ.get("SAM_LOCAL_IMAGE", "auto")
    official = OFFICIAL_IMAGE.format(architecture=machine_architecture())
    if choice == "official" or (choice == "auto" and docker("image", "inspect", official).returncode == 0):
        return official
    built = make("sam-local-image")
    assert built.returncode == 0, built.stderr[-4000:]
    return built.stdout.split()[-1]


def remove_run_images(*images: str) -> None:
    """Removes run images (children first) with any container still made from them."""
    for image in images:
        containers = docker("ps", "--all", "--quiet", "--filter", f"ancestor={image}").stdout.split()
        if containers:
            docker("rm", "--force", *containers)
        docker("image", "rm", image)


def remove_stale_run_images() -> None:
    """Run images (and SAM's images built on them) that a killed run left behind."""
    listed = docker("image", "ls", "--filter", f"label={RUN_LABEL}", "--format", "{{.Repository}}:{{.Tag}}")
    # SAM's emulator images (":rapid-") are children of the run images: they go first.
    for image in sorted(listed.stdout.split(), key=lambda name: ":rapid-" not in name):
        inspected = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{RUN_LABEL}"}}}}', image)
        started = inspected.stdout.strip()
        if started.isdigit() and time.time() - int(started) > STALE_RUN_IMAGE_SECONDS:
            remove_run_images(image)


@pytest.fixture(scope="session")
def timings() -> Iterator[dict[str, float]]:
    """Seconds that the steps of this run's sam-local work took, by step; written to .sam-local/timings.json at the
    end (``make sam-local`` prints it)."""
    steps: dict[str, float] = {}
    yield steps
    if steps:
        TIMINGS.parent.mkdir(exist_ok=True)
        TIMINGS.write_text(json.dumps({name: round(value, 1) for name, value in steps.items()}, indent=1))


@pytest.fixture(scope="session")
def function_image(base_image: str, sam_build: Path, timings: dict[str, float]) -> Iterator[str]:
    """The base image with this run's built layer in /opt, as SAM's own per-invoke build would add it."""
    remove_stale_run_images()
    started = time.monotonic()
    repository = f"connvault-sam-local/run-{uuid.uuid4().hex[:12]}"
    image = f"{repository}:latest"
    built = docker(
        "build",
        "--quiet",
        "--label",
        f"{RUN_LABEL}={int(time.time())}",
        "--tag",
        image,
        "--file",
        "-",
        str(sam_build / "CommonLayer"),
        input=f"FROM {base_image}\nCOPY . /opt/\n",
    )
    assert built.returncode == 0, built.stderr[-4000:]
    timings["run image build"] = time.monotonic() - started
    yield image
    # SAM adds its emulator to an --invoke-image as <repository>:rapid-<architecture>; the containers it ran
    # from that are all gone unless a SAM process was killed.
    remove_run_images(f"{repository}:rapid-{machine_architecture()}", image)


@pytest.fixture(scope="session")
def local_template(sam_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built template as SAM runs it here: the layer comes with the image (``function_image``), code paths are
    absolute, ``AWS_ENDPOINT_URL`` is declared (SAM hands a container only variables the template declares, with
    the values ``--env-vars`` gives), and each timeout has ``INIT_ALLOWANCE_SECONDS`` more."""
    document = load_template(sam_build / "template.yaml")
    function_globals = document["Globals"]["Function"]
    function_globals.pop("Layers")
    function_globals["Environment"]["Variables"]["AWS_ENDPOINT_URL"] = ""
    for resource in document["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            properties = resource["Properties"]
            properties.pop("Layers", None)
            properties["CodeUri"] = str(sam_build / properties["CodeUri"])
            properties["Timeout"] = properties.get("Timeout", function_globals["Timeout"]) + INIT_ALLOWANCE_SECONDS
    path = tmp_path_factory.mktemp("sam-local") / "template.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Bridged:
    """The suite's services as a container reaches them."""

    host: str
    database_port: int
    aws_endpoint: str


@pytest.fixture(scope="session")
def bridged(docker_bridge: str, database: TestDatabase, moto_endpoint: str) -> Iterator[Bridged]:
    target = database.owner_target
    to_database = unix_socket(target.unix_sock) if target.unix_sock else tcp_socket(target.host or "", target.port)
    with contextlib.ExitStack() as stack:
        database_port = stack.enter_context(Forwarder(docker_bridge, to_database)).port
        yield Bridged(docker_bridge, database_port, bridge_url(moto_endpoint, docker_bridge, stack))


@pytest.fixture(scope="session")
def database_secret_arn(database: TestDatabase) -> str:
    """The database login as a deployment keeps it: a Secrets Manager secret (in moto) with username and password."""
    target = database.owner_target
    login = {"username": target.user} | ({"password": target.password.reveal()} if target.password else {})
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"connvault-sam-local-db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(login)
    )
    return secret["ARN"]


@pytest.fixture(scope="session")
def sam_local(
    local_template: Path,
    function_image: str,
    bridged: Bridged,
    database: TestDatabase,
    database_secret_arn: str,
    kms_key_id: str,
    moto_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> SamLocal:
    sam_env = {
        **FAKE_AWS,
        "PATH": f"{SAM.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SAM_CLI_TELEMETRY": "0",
        # SAM asks STS for the account id: moto answers it, on loopback.
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        **({"DOCKER_HOST": os.environ["DOCKER_HOST"]} if "DOCKER_HOST" in os.environ else {}),
    }
    env = {
        # The deployment's shape: host, port and name, with the login in a Secrets Manager secret.
        "CONNVAULT_DATABASE_URL": "",
        "CONNVAULT_DB_HOST": bridged.host,
        "CONNVAULT_DB_PORT": str(bridged.database_port),
        "CONNVAULT_DB_NAME": database.owner_target.database,
        "CONNVAULT_DB_SECRET_ARN": database_secret_arn,
        "CONNVAULT_DB_SSL": "false",
        "CONNVAULT_DB_IAM_AUTH": "false",
        "CONNVAULT_DB_USER": "",
        "CONNVAULT_KMS_KEY_ID": kms_key_id,
        "CONNVAULT_CALLBACK_URL": "http://127.0.0.1:3000/oauth/callback",
        "CONNVAULT_REFRESH_QUEUE_URL": "",
        "AWS_ENDPOINT_URL": bridged.aws_endpoint,
    }
    workdir = tmp_path_factory.mktemp("sam-local-runs")
    return SamLocal(local_template, function_image, env, sam_env, bridged.host, workdir)
