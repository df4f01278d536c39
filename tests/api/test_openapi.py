"""The committed OpenAPI document is the one the code generates; ``make openapi`` refreshes it."""

from __future__ import annotations

import json
from pathlib import Path

from connvault.api.openapi import openapi_document

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert json.loads(COMMITTED.read_text()) == json.loads(openapi_document()), "run `make openapi` and commit"


def test_the_openapi_route_serves_the_same_document(api) -> None:
    answer = api.call("GET", "/openapi.json")
    assert answer.status == 200
    assert answer.json() == json.loads(openapi_document())
