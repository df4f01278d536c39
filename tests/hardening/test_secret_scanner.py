"""The secret scanner itself: a secret that reaches a log record, captured stdout or stderr (Powertools logs,
lines written straight to the logger's stream, EMF metrics), a failing test's exception or an HTTP error body
fails the test, and the report that says so is masked. Proven by running pytest on a small test file in a child
process, with the suite's own harness loaded as a plugin (``-p tests.conftest``), so what is checked is exactly
what guards the suite."""

from __future__ import annotations

import base64
import os
import secrets as random
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import boto3
import pytest

from tests.support.secrets import SecretLeak, SecretRegistry, activate

ROOT = Path(__file__).resolve().parents[2]

PROBES = """
import json
import logging
import os
import sys

from aws_lambda_powertools import Metrics
from connvault.observability import info_line, logger as connvault_logger

SECRET = os.environ["LEAK_PROBE"]


def test_clean(secrets):
    secrets.add(SECRET)
    print("nothing to see here")
    logging.getLogger("some.library").warning("a warning without secrets")


def test_leak_in_a_log_record(secrets):
    secrets.add(SECRET)
    logging.getLogger("some.library").warning("refreshing with %s", SECRET)


def test_leak_in_a_powertools_log_line(secrets):
    secrets.add(SECRET)
    connvault_logger.info("refreshed", extra={"token": SECRET})


def test_leak_in_a_line_written_straight(secrets):
    secrets.add(SECRET)
    connvault_logger.setLevel(logging.INFO)
    info_line("credential issued", {"connection_id": SECRET})


def test_leak_in_an_emf_metric_dimension(secrets):
    secrets.add(SECRET)
    metrics = Metrics(namespace="probe", service="probe")
    metrics.add_dimension(name="token", value=SECRET)
    metrics.add_metric(name="Refreshed", unit="Count", value=1)
    metrics.flush_metrics()


def test_leak_on_stderr(secrets):
    secrets.add(SECRET)
    print(f"debug: {SECRET}", file=sys.stderr)


def test_leak_in_the_exception_of_a_failing_test(secrets):
    secrets.add(SECRET)
    raise RuntimeError(f"provider said no to {SECRET}")


def test_leak_in_an_assertion_on_a_secret(secrets):
    secrets.add(SECRET)
    assert SECRET == "something else"


def test_leak_in_an_http_error_body(secrets):
    secrets.add(SECRET)
    secrets.check(json.dumps({"error": {"message": SECRET}}), "an HTTP error body")
"""


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str, str]:
    """Run the probes once: ``({test name: outcome}, everything the run printed, the probe secret)``."""
    workdir = tmp_path_factory.mktemp("scanner")
    (workdir / "test_probes.py").write_text(textwrap.dedent(PROBES))
    (workdir / "pytest.ini").write_text("[pytest]\n")
    secret = f"probe-{random.token_urlsafe(24)}"
    report = workdir / "report.xml"
    env = {
        **os.environ,
        "LEAK_PROBE": secret,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-p",
            "no:randomly",
            "-rA",
            f"--junitxml={report}",
            "test_probes.py",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):  # noqa: S314 - pytest wrote it, here
        kinds = [child.tag for child in case if child.tag in ("failure", "error")]
        outcomes[case.attrib["name"]] = "+".join(kinds) or "passed"
    printed = run.stdout + run.stderr + report.read_text()
    return outcomes, printed, secret


def test_a_test_that_leaks_nothing_passes(probe_run: tuple[dict[str, str], str, str]) -> None:
    outcomes, _, _ = probe_run
    assert outcomes["test_clean"] == "passed"


@pytest.mark.parametrize(
    "probe",
    [
        "test_leak_in_a_log_record",
        "test_leak_in_a_powertools_log_line",
        "test_leak_in_a_line_written_straight",
        "test_leak_in_an_emf_metric_dimension",
        "test_leak_on_stderr",
        "test_leak_in_the_exception_of_a_failing_test",
        "test_leak_in_an_assertion_on_a_secret",
        "test_leak_in_an_http_error_body",
    ],
)
def test_a_secret_anywhere_in_a_tests_output_fails_it(
    probe_run: tuple[dict[str, str], str, str], probe: str, secrets: SecretRegistry
) -> None:
    outcomes, printed, secret = probe_run
    secrets.add(secret)
    assert outcomes[probe] != "passed"
    assert "SecretLeak" in printed


def test_the_report_of_a_leak_does_not_repeat_the_secret(
    probe_run: tuple[dict[str, str], str, str], secrets: SecretRegistry
) -> None:
    _, printed, secret = probe_run
    secrets.add(secret)
    assert secret not in printed
    assert "***" in printed


def test_check_names_where_but_never_what(secrets: SecretRegistry) -> None:
    token = f"rt-{random.token_urlsafe(24)}"
    secrets.add(token)

    with pytest.raises(SecretLeak) as leak:
        secrets.check(f'{{"error": "bad refresh token {token}"}}', "an HTTP error body")

    assert str(leak.value) == "a registered secret appears in an HTTP error body"
    assert secrets.redact(f"a {token} b") == "a *** b"


def test_values_too_short_to_be_secrets_are_not_registered(secrets: SecretRegistry) -> None:
    secrets.add("short", "", None, b"")

    secrets.check("short and sweet", "a log line")


@pytest.mark.parametrize("operation", ["generate_data_key", "decrypt"])
def test_kms_data_keys_register_themselves(kms_key_id: str, secrets: SecretRegistry, operation: str) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    context = {"probe": "scanner"}
    generated = kms.generate_data_key(KeyId=kms_key_id, KeySpec="AES_256", EncryptionContext=context)
    watching = SecretRegistry()  # sees only what the operation under test registers
    activate(watching)
    try:
        if operation == "generate_data_key":
            answer = kms.generate_data_key(KeyId=kms_key_id, KeySpec="AES_256", EncryptionContext=context)
        else:
            answer = kms.decrypt(CiphertextBlob=generated["CiphertextBlob"], EncryptionContext=context)
    finally:
        activate(secrets)
    plaintext = answer["Plaintext"]
    secrets.add_key_material(plaintext)

    for spelling in (base64.b64encode(plaintext).decode(), plaintext.hex(), repr(plaintext)):
        with pytest.raises(SecretLeak):
            watching.check(f"data key: {spelling}", "a log line")
