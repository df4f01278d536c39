"""Events (EventBridge schedule): revoke grants of connect sessions that expired unconfirmed, expire webhook
deliveries pending too long and drop old history, then send the outbox's due webhook deliveries, signed, to tenants'
endpoints."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.observability import logger, metrics, tracer
from connvault.services.webhook_delivery import run_scheduled


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # type: ignore[untyped-decorator]  # Powertools: Callable[..., Any]
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_scheduled(context.get_remaining_time_in_millis)
