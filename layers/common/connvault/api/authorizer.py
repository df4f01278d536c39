"""The HTTP API's Lambda REQUEST authorizer (simple responses): a tenant API key in, the tenant id in the context.

``functions/authorizer`` imports this with frame-stack room (``connvault.frame_room``)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.api.context_keys import UNCHECKED_CONTEXT_KEY
from connvault.observability import http_entry
from connvault.services.auth import authorize


@http_entry
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = event.get("headers") or {}
    # API Gateway sends header names in lower case; `sam local start-api` spells them as Werkzeug does.
    decision = authorize(headers.get("authorization", headers.get("Authorization")))
    if decision.unchecked:
        return {"isAuthorized": True, "context": {UNCHECKED_CONTEXT_KEY: "database_unavailable"}}
    if decision.tenant_id is None:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"tenant_id": str(decision.tenant_id)}}
