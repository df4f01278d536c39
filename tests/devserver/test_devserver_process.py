"""``python -m devserver`` as a newcomer runs it: a subprocess on free ports, driven over real HTTP from the
printed API key to a token, then stopped with SIGINT.

One test, because one start is the expensive part (PostgreSQL, migrations, imports): it walks the README
story in order and checks the shutdown at the end.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import urllib3

from tests.support.secrets import SecretRegistry

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0  # initdb, migrations and every import on a loaded 2-core machine
# PostgreSQL's shutdown checkpoint took more than 10 s on a two-core machine that several test runs (and Docker
# containers) share.
STOP_TIMEOUT = 60.0


class Output:
    """The process's stdout (stderr merged), read line by line on a thread so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + self.text) from None
            if line is None:
                raise AssertionError(f"the devserver exited before printing {pattern!r}:\n" + self.text)
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def drain(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT)
        while (line := self._queue.get_nowait()) is not None:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def start(data_dir: Path) -> tuple[subprocess.Popen[str], Output]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONNVAULT_")}
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "devserver", "--port", "0", "--provider-port", "0", "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, Output(process)


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(pgdata) in " ".join(process.info["cmdline"] or ()):
            found.append(process)
    return found


def test_the_devserver_goes_from_start_to_a_token_and_stops_cleanly(tmp_path: Path, secrets: SecretRegistry) -> None:
    data_dir = tmp_path / "data"
    process, output = start(data_dir)
    try:
        provider = output.wait_for(r"demo provider\s+(http://127\.0\.0\.1:\d+)", START_TIMEOUT).group(1)
        api_key = output.wait_for(r"export CONNVAULT_API_KEY=(\S+)", START_TIMEOUT).group(1)
        api = output.wait_for(r"^ready in [\d.]+ s on (http://127\.0\.0\.1:\d+)", START_TIMEOUT).group(1)
        pgdata = data_dir / "postgres"
        assert postgres_processes(pgdata), "the devserver's PostgreSQL is not running"
        http = urllib3.PoolManager(timeout=10)
        auth = {"Authorization": f"Bearer {api_key}"}

        catalog = http.request("GET", f"{api}/providers", headers=auth)
        assert catalog.status == 200
        assert "demo" in {item["slug"] for item in catalog.json()["items"]}

        started = http.request(
            "POST",
            f"{api}/connect-sessions",
            headers=auth,
            json={"provider": "demo", "end_user_id": "me", "return_url": f"{api}/demo/done"},
        )
        assert started.status == 201, started.data
        authorize_url = started.json()["authorize_url"]

        # The browser's part: the provider approves at once and sends it to the gateway's callback ...
        at_provider = http.request("GET", authorize_url, redirect=False)
        assert at_provider.status == 302
        callback = at_provider.headers["Location"]
        assert callback.startswith(f"{api}/oauth/callback?")
        for values in parse_qs(urlsplit(callback).query).values():
            secrets.add(*values)
        # ... which completes the connection and sends it to the demo page.
        landed = http.request("GET", callback, redirect=False)
        assert landed.status == 302, landed.data
        done = landed.headers["Location"]
        assert done.startswith(f"{api}/demo/done?connection_id=")
        connection_id = parse_qs(urlsplit(done).query)["connection_id"][0]
        page = http.request("GET", done)
        assert page.status == 200
        assert f"{api}/connections/{connection_id}/token" in page.data.decode()

        token = http.request("GET", f"{api}/connections/{connection_id}/token", headers=auth)
        assert token.status == 200, token.data
        secrets.add(token.json()["access_token"], token.json().get("refresh_token"), "demo-secret")

        # The proxy calls the demo provider's API with that token; when the provider stops taking it, the proxy
        # refreshes once (the demo provider rotates refresh tokens strictly) and retries.
        me = http.request("GET", f"{api}/connections/{connection_id}/proxy/me", headers=auth)
        assert (me.status, me.json()) == (200, {"sub": "demo-user", "name": "Demo User"}), me.data
        assert http.request("POST", f"{provider}/demo/expire-access-tokens").status == 204
        again = http.request("GET", f"{api}/connections/{connection_id}/proxy/items?page=2", headers=auth)
        assert again.status == 200, again.data
        assert 'rel="next"' in again.headers["Link"]
        stats = http.request("GET", f"{provider}/demo/stats").json()
        assert (stats["token_calls"]["refresh_token"], stats["refresh_token_reuse"]) == (1, 0)
        renewed = http.request("GET", f"{api}/connections/{connection_id}/token", headers=auth).json()
        secrets.add(renewed["access_token"])
        assert renewed["access_token"] != token.json()["access_token"]

        assert http.request("GET", f"{api}/connections").status == 401
        assert http.request("GET", f"{api}/connections", headers={"Authorization": "Bearer cv_nope"}).status == 403

        # A second devserver on the same data directory would drop this one's database: it refuses.
        second = subprocess.run(
            [sys.executable, "-m", "devserver", "--port", "0", "--provider-port", "0", "--data-dir", str(data_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        assert second.returncode == 1
        assert "another devserver is using" in second.stderr

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=STOP_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output.drain()
    assert output.lines[-1] == "stopped"
    deadline = time.monotonic() + 2
    while postgres_processes(pgdata) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert postgres_processes(pgdata) == [], "PostgreSQL outlived the devserver"

    # The demo key is printed once, on purpose; no other secret reaches the output, and request lines never
    # carry a query string (the callback's holds the code and the state).
    assert [line for line in output.lines if api_key in line] == [f"  export CONNVAULT_API_KEY={api_key}"]
    secrets.check(output.text, "the devserver's output")
    requests = [line for line in output.lines if re.match(r"^\d\d:\d\d:\d\d (GET|POST) ", line)]
    assert any(" GET /oauth/callback 302 " in line for line in requests)
    assert not any("?" in line for line in requests)
