"""The process's KMS client, built once on first use."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from connvault.config import get_settings
from connvault.once import once


@once
def get_kms_client() -> Any:
    """KMS with short timeouts and few retries: a stuck KMS must surface as a typed error, not a hung Lambda."""
    settings = get_settings()
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("kms", region_name=settings.region, config=config)
