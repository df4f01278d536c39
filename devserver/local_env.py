"""The environment every local run shares (``make run``, the tests, the benchmarks): fake AWS credentials for
moto, so nothing can reach a real account, and Powertools named and quiet the way the template names it.

Imports nothing of connvault: callers set these before connvault reads its settings.
"""

from __future__ import annotations

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "connvault",
    "POWERTOOLS_METRICS_NAMESPACE": "connvault",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOGGER_LOG_EVENT": "false",
}
LOCAL_DEVELOPMENT = {
    # Local providers listen on 127.0.0.1 over plain http; a deployment never sets this (a test reads the template).
    "CONNVAULT_ALLOW_INSECURE_LOOPBACK_URLS": "true",
}
LOCAL_ENV = {**FAKE_AWS, **POWERTOOLS, **LOCAL_DEVELOPMENT}
