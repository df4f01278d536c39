"""The sample events of ``events/``, as ``sam local invoke -e`` takes them, pointed at a test's own rows.

Shared by the built-bundle tests (``tests/artifact``) and the container tests (``tests/sam_local``).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from tests.support.cloudformation import EVENTS


def sample(name: str) -> dict[str, Any]:
    """``events/<name>.json``, the event ``sam local invoke -e`` would be given."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def for_tenant(event: dict[str, Any], tenant_id: UUID) -> dict[str, Any]:
    """An HTTP API sample event as the authorizer would have passed it on for ``tenant_id``."""
    event["requestContext"]["authorizer"]["lambda"]["tenant_id"] = str(tenant_id)
    return event


def with_authorization(event: dict[str, Any], presented: str) -> dict[str, Any]:
    event["headers"]["authorization"] = presented
    event["identitySource"] = [presented]
    return event


def at_connection(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    """A sample event for a ``/connections/{connection_id}/...`` route, pointed at another connection."""
    sample_id = event["pathParameters"]["connection_id"]
    event["rawPath"] = event["rawPath"].replace(sample_id, connection_id)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"]["connection_id"] = connection_id
    return event
