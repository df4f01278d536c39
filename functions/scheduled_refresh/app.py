"""Scheduled refresh (EventBridge): renew OAuth tokens before they expire, or enqueue them in fan-out mode; then
purge the accounts soft-deleted longer ago than the retention period."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.observability import logger, metrics, tracer
from connvault.services.accounts import purge_deleted_accounts
from connvault.services.scheduler import run_scheduled


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)  # type: ignore[untyped-decorator]  # Powertools: Callable[..., Any]
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_scheduled(context.get_remaining_time_in_millis).as_dict()
    return {**report, "accounts_purged": purge_deleted_accounts()}
