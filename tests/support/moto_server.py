"""moto as an HTTP server in the test process, for code that runs in another process or in a container.

A pytest plugin (``pytest_plugins`` in tests/conftest.py). The server shares its state with the session's in-process
``mock_aws``, so the suite's KMS key (and any secret a test makes in-process) is the one the other process reaches
through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="session")
def moto_endpoint(aws: None) -> Iterator[str]:
    """Every moto service on 127.0.0.1 (a free port), for the session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
