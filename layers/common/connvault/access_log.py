"""The access log of credentials: one structured line, and one per-tenant metric, per credential handed out.

Security teams ask "who took which token when"; this answers it from CloudWatch Logs alone (see
docs/access-log.md for the Logs Insights queries). The line carries the tenant, the connection, the kind of
credential and whether a refresh happened; the request id is the line's ``correlation_id`` (the API Gateway
request id, which every token-route log line carries). Never the credential itself.

Both are written to stdout, where Lambda ships them: no database round trip, no call to CloudWatch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from connvault.observability import NAMESPACE, SERVICE, MetricName, logger

if TYPE_CHECKING:
    from uuid import UUID

ACCESS_LOG_MESSAGE = "credential issued"


def record_issued(tenant_id: UUID, connection_id: UUID, credential_type: str, *, refreshed: bool) -> None:
    tenant = str(tenant_id)
    logger.info(
        ACCESS_LOG_MESSAGE,
        extra={
            "access_log": True,
            "tenant_id": tenant,
            "connection_id": str(connection_id),
            "credential_type": credential_type,
            "refreshed": refreshed,
        },
    )
    # Its own EMF document, dimensioned by tenant: the function's other metrics keep their dimensions.
    with single_metric(
        name=MetricName.CREDENTIAL_ISSUED,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="tenant_id", value=tenant)
