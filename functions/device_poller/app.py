"""Device poller (EventBridge, every minute): advance pending device connect sessions, so one completes even if
the tenant never asks again."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.observability import logger, metrics, tracer
from connvault.services.device import advance_device_sessions


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # type: ignore[untyped-decorator]  # Powertools: Callable[..., Any]
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return advance_device_sessions(remaining_ms=context.get_remaining_time_in_millis).as_dict()
