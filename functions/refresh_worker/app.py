"""Refresh worker (SQS, fan-out mode): refresh the connections the scheduled scan enqueued."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.observability import logger, metrics, tracer
from connvault.services.fanout import QueuedMessage, refresh_messages


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # type: ignore[untyped-decorator]  # Powertools: Callable[..., Any]
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    messages = [QueuedMessage(str(r.get("messageId", "")), str(r.get("body", ""))) for r in event.get("Records") or []]
    result = refresh_messages(messages, remaining_ms=context.get_remaining_time_in_millis)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in result.failed_message_ids]}
