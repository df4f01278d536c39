"""The access log of credentials: one structured line per credential handed out, which is also the per-tenant
metric.

Security teams ask "who took which token when"; this answers it from CloudWatch Logs alone (see
docs/access-log.md for the Logs Insights queries). The line carries the tenant, the connection, the kind of
credential and whether a refresh happened; the request id is the line's ``correlation_id`` (the API Gateway
request id, which every token-route log line carries). Never the credential itself.

The same line carries an Embedded Metric Format directive (``_aws``), so CloudWatch also counts
``CredentialIssued`` per tenant from it: one JSON line to stdout, no database round trip, no CloudWatch call, and
no second document (Powertools' ``single_metric`` measured three times the cost of the fetch itself).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from connvault.observability import NAMESPACE, MetricName, info_line, logger

if TYPE_CHECKING:
    from uuid import UUID

ACCESS_LOG_MESSAGE = "credential issued"
_DIRECTIVE = [
    {
        "Namespace": NAMESPACE,
        "Dimensions": [["service", "tenant_id"]],
        "Metrics": [{"Name": MetricName.CREDENTIAL_ISSUED, "Unit": "Count"}],
    }
]


def record_issued(tenant_id: UUID, connection_id: UUID, credential_type: str, *, refreshed: bool) -> None:
    if logger.log_level > logging.INFO:
        return  # a deployment logging at WARNING turned the access log off: its fields are not even built
    info_line(
        ACCESS_LOG_MESSAGE,
        {
            "access_log": True,
            "tenant_id": str(tenant_id),
            "connection_id": str(connection_id),
            "credential_type": credential_type,
            "refreshed": refreshed,
            "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": _DIRECTIVE},
            MetricName.CREDENTIAL_ISSUED: 1,
        },
    )
