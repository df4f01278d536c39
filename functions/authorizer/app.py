"""HTTP API Lambda REQUEST authorizer (simple responses): a tenant API key in, the tenant id in the context."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.observability import logger, metrics
from connvault.services.auth import UNCHECKED_CONTEXT_KEY, authorize


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = event.get("headers") or {}
    # API Gateway sends header names in lower case; `sam local start-api` spells them as Werkzeug does.
    decision = authorize(headers.get("authorization", headers.get("Authorization")))
    if decision.unchecked:
        return {"isAuthorized": True, "context": {UNCHECKED_CONTEXT_KEY: "database_unavailable"}}
    if decision.tenant_id is None:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"tenant_id": str(decision.tenant_id)}}
