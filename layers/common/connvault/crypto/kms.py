"""The process's KMS client, built once on first use.

Typed with boto3's stubs (``mypy-boto3-kms``, a development requirement), imported for the type checker only:
the Lambda pays nothing for them, and every caller that is handed the client (``DataKeys``, rotation) is checked
against KMS's real operations and answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from connvault.config import get_settings
from connvault.once import once

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient


@once
def get_kms_client() -> KMSClient:
    """KMS with short timeouts and few retries: a stuck KMS must surface as a typed error, not a hung Lambda."""
    settings = get_settings()
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("kms", region_name=settings.region, config=config)
