"""``Custom::DatabaseMigrations``: applies ``schema/`` and seeds the catalog on stack Create and Update.

CloudFormation invokes this asynchronously and waits for the answer at the event's ``ResponseURL``;
``connvault.custom_resource`` owns that protocol (one answer, always, before the deadline; Delete touches
nothing). This module only turns the runner's result into the resource's ``Data``.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from connvault.custom_resource import respond
from connvault.migrations import migrate
from connvault.observability import logger


def apply_migrations() -> dict[str, str]:
    # A CloudFormation rollback runs the previous release here against the schema the failed release left: that
    # schema is kept as it is (an operator steps it back with `python -m connvault.migrations down`).
    result = migrate(allow_newer_schema=True)
    if result.newer_in_database:
        logger.warning(
            "the database schema is newer than this release; left as it is",
            extra={"newer_in_database": list(result.newer_in_database)},
        )
    logger.info(
        "migrations applied", extra={"applied": list(result.applied), "seeded_providers": result.seeded_providers}
    )
    return {
        "AppliedCount": str(len(result.applied)),
        "SeededProviders": str(result.seeded_providers),
        "NewerInDatabase": ",".join(result.newer_in_database),
    }


@logger.inject_lambda_context(correlation_id_path="RequestId", log_event=False, clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    respond(event, context, apply_migrations)
