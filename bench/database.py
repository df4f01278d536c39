"""The local stack every benchmark runs on: an embedded PostgreSQL and moto KMS with one key, set in the
environment the way the tests set it. Removed again when the block ends."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def bench_database(prefix: str = "connvault-bench-") -> Iterator[Any]:
    """The running database (``tests.support.database.TestDatabase``), with ``CONNVAULT_KMS_KEY_ID`` set."""
    import boto3
    from moto import mock_aws

    from tests.support.database import start_database, stop_database

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    with mock_aws():
        kms = boto3.client("kms", region_name="us-east-1")
        os.environ["CONNVAULT_KMS_KEY_ID"] = kms.create_key()["KeyMetadata"]["Arn"]
        db = start_database(workdir)
        try:
            yield db
        finally:
            stop_database(workdir)
