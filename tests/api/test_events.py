"""The sample events in ``events/`` drive their handlers, so they cannot rot.

A file named ``<job>.json`` or ``<job>_<what>.json`` is an event for ``functions/<job>``. The tenant and API
key the samples name are created first, so each sample exercises its handler's real path, not only its
refusals. Every secret-looking value in a sample is registered: none may reach a log record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from devserver.handlers import InvocationContext, load_handler
from tests.support.factories import owner

EVENTS = Path(__file__).resolve().parents[2] / "events"
HTTP_JOBS = ("api", "token_fetch", "proxy", "oauth_callback", "connect_page")
SECRET_FIELDS = frozenset({"authorization", "code", "state", "token", "api_key", "password"})


def job_of(path: Path) -> str | None:
    for job in ("authorizer", *HTTP_JOBS):
        if path.stem == job or path.stem.startswith(job + "_"):
            return job
    return None


SAMPLES = sorted(path for path in EVENTS.glob("*.json") if job_of(path))


def secret_values(document: Any) -> list[str]:
    """Values under secret-named keys, anywhere in the event, JSON bodies included."""
    found: list[str] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if key in SECRET_FIELDS and isinstance(value, str):
                found += [value, value.removeprefix("Bearer ")]
            elif key == "body" and isinstance(value, str):
                found += secret_values(json.loads(value))
            else:
                found += secret_values(value)
    elif isinstance(document, list):
        for item in document:
            found += secret_values(item)
    return found


@pytest.fixture
def sample_tenant(db) -> str:
    """The tenant and API key the authorizer sample presents, made to match it."""
    event = json.loads((EVENTS / "authorizer.json").read_text())
    tenant_id = json.loads((EVENTS / "token_fetch.json").read_text())["requestContext"]["authorizer"]["lambda"][
        "tenant_id"
    ]
    _, key_id, secret = event["headers"]["authorization"].removeprefix("Bearer ").split("_", 2)
    with owner(db) as connection:
        connection.run("INSERT INTO tenants (id, name) VALUES (CAST(:t AS uuid), 'Sample tenant')", t=tenant_id)
        connection.run(
            "INSERT INTO tenant_api_keys (tenant_id, key_id, secret_sha256) VALUES (CAST(:t AS uuid), :k, :s)",
            t=tenant_id,
            k=key_id,
            s=hashlib.sha256(secret.encode()).digest(),
        )
    return tenant_id


def test_there_is_a_sample_for_every_http_function() -> None:
    assert {job_of(path) for path in SAMPLES} == {"authorizer", *HTTP_JOBS}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.name)
def test_sample_event_gets_a_sensible_answer(path: Path, sample_tenant: str, secrets) -> None:
    event = json.loads(path.read_text())
    secrets.add(*secret_values(event))
    job = job_of(path)

    answer = load_handler(job)(event, InvocationContext())

    if job == "authorizer":
        assert answer == {"isAuthorized": True, "context": {"tenant_id": sample_tenant}}
        return
    assert answer["statusCode"] < 500, answer
    secrets.check(json.dumps(answer), "the answer to a sample event")
