"""The demo provider's package (``demo_provider/``): one import surface for its users, and answers that do not
wait on Nagle's algorithm."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest
import urllib3

import demo_provider
from demo_provider import DemoProvider
from demo_provider.server import RequestHandler

REPO = Path(__file__).resolve().parents[2]
USERS = ("tests", "bench", "devserver")
"""Where the demo provider is used from: its own modules may import each other, nobody else reaches inside."""


def test_its_users_import_it_from_the_package_only() -> None:
    reaching_in = sorted(
        (str(path.relative_to(REPO)), node.module)
        for user in USERS
        for path in (REPO / user).rglob("*.py")
        if path != Path(__file__).resolve()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("demo_provider.")
    )
    assert reaching_in == []


def test_every_name_the_package_offers_is_defined() -> None:
    assert all(hasattr(demo_provider, name) for name in demo_provider.__all__)


def test_answers_go_out_with_tcp_nodelay(monkeypatch: pytest.MonkeyPatch) -> None:
    # Headers and body are two writes: with Nagle on, the client's delayed ACK would add ~40 ms to every answer.
    seen: list[int] = []
    setup = RequestHandler.setup

    def recording_setup(handler: RequestHandler) -> None:
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(RequestHandler, "setup", recording_setup)
    with DemoProvider() as provider:
        assert urllib3.request("GET", f"{provider.base_url}/demo/stats", timeout=5).status == 200

    assert seen and all(seen)
