"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven through Selenium against the
devserver's gateway in process: the real functions, the test PostgreSQL, the demo providers on 127.0.0.1.

The driver is Debian's, named by path, and Chromium runs with a fresh profile, no background networking and a
host resolver that knows only 127.0.0.1, so nothing the page does can leave the machine. ``make test`` installs
the two packages (``make browser-deps``); where they cannot be installed these tests are skipped and say why.
Screenshots of every page go to ``build/test-output/browser/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from connvault import wiring
from demo_provider import DemoProvider
from devserver.demo_setup import (
    DemoTenant,
    create_demo_tenant,
    demo_connect_url,
    install_demo_api_key_provider,
    install_demo_provider,
)
from devserver.gateway import Gateway
from tests.support.database import TestDatabase
from tests.support.secrets import SecretRegistry

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "test-output" / "browser"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--disable-dev-shm-usage",
    # Every name but the loopback address fails to resolve: a request for a third-party host cannot leave.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing: `make browser-deps` installs Debian's chromium and chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `make venv` installs requirements-dev.txt"
    return None


@dataclass
class Site:
    """The devserver's gateway on a free port, with the demo tenant and both demo providers."""

    gateway: Gateway
    provider: DemoProvider
    tenant: DemoTenant
    secrets: SecretRegistry
    links: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.gateway.base_url

    def connect_url(self) -> str:
        url = demo_connect_url(self.tenant, self.base_url, f"{self.base_url}/demo/done").url.reveal()
        self.secrets.add(url.split("token=", 1)[1])
        return url


@pytest.fixture
def site(db: TestDatabase, secrets: SecretRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    gateway = Gateway(("127.0.0.1", 0))
    monkeypatch.setenv("CONNVAULT_CALLBACK_URL", f"{gateway.base_url}/oauth/callback")
    wiring.reset()
    serving = threading.Thread(target=gateway.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    with DemoProvider() as provider:
        install_demo_provider(db.owner_target, provider)
        install_demo_api_key_provider(db.owner_target, provider)
        tenant = create_demo_tenant(provider, return_url=f"{gateway.base_url}/demo/done")
        secrets.add(tenant.api_key.reveal(), provider.settings.client_secret, *provider.settings.api_keys)
        try:
            yield Site(gateway, provider, tenant, secrets)
        finally:
            gateway.shutdown()
            gateway.server_close()
            serving.join()
            stats = provider.stats()
            secrets.add(*stats.access_tokens, *stats.live_refresh_tokens)
    monkeypatch.undo()
    wiring.reset()


class Browser:
    """One Chromium with its own profile; records every request it makes and what its console said."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self._events: list[dict[str, Any]] = []

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def network(self) -> list[dict[str, Any]]:
        """Every DevTools Network event so far (requests and responses, headers included)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"].startswith("Network."):
                self._events.append(message)
        return self._events

    def requested_hosts(self) -> set[str]:
        """The hosts of every network request (http, https, ws, wss); data: and the browser's own chrome:
        pages are no network request."""
        urls = [e["params"]["request"]["url"] for e in self.network() if e["method"] == "Network.requestWillBeSent"]
        return {urlsplit(url).hostname or "?" for url in urls if urlsplit(url).scheme in ("http", "https", "ws", "wss")}

    def response_headers(self, path: str) -> list[dict[str, str]]:
        """The headers of every response to a document at ``path`` (lower-cased names)."""
        return [
            {name.lower(): value for name, value in event["params"]["response"]["headers"].items()}
            for event in self.network()
            if event["method"] == "Network.responseReceived"
            and urlsplit(event["params"]["response"]["url"]).path == path
        ]

    def console_problems(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


@pytest.fixture
def browser() -> Iterator[Browser]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch a driver or a browser
    profile = tempfile.mkdtemp(prefix="connvault-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=900,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
