"""The secret scanner: tests register the secrets they create; any of them seen where output goes fails the test.

Where it looks, for every test of the suite:

* log records on the root and ``connvault`` loggers (a handler, checked when the ``secrets`` fixture ends);
* everything pytest captured for the test: stdout and stderr (Powertools writes its JSON logs and the EMF
  metric blobs there) and the ``caplog`` text, phase by phase (``scan_report``, from the
  ``pytest_runtest_makereport`` hook in ``tests/conftest.py``);
* the exception of a failing test, and the failure report pytest would print: a failure that would show a
  secret is reported with every secret masked, so the CI log does not become the leak;
* HTTP error bodies and ``Location`` headers (``tests/api/conftest.py`` calls ``check`` on each).

Every KMS data key the process generates or unwraps is registered too (``register_kms_data_keys``), in the
forms a careless log line would print it: base64, hex and the bytes ``repr``.

One substring search per registered secret per text: cheap enough to run on everything.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

MIN_LENGTH = 8
"""Shorter values would match by accident (and no real secret is this short)."""


class SecretLeak(AssertionError):
    """A registered secret appeared in output. The message says where, never what."""


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args), repr(getattr(record, "__dict__", {}))]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
            parts.append(str(record.exc_info[1]))
        self.lines.append(" ".join(parts))


class SecretRegistry:
    """The secrets one test made. Thread-safe: provider threads and KMS hooks register concurrently."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._recorder = _Recorder()

    def add(self, *values: str | bytes | None) -> None:
        found = []
        for value in values:
            if value:
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                if len(text) >= MIN_LENGTH:
                    found.append(text)
        with self._lock:
            self._values.update(found)

    def add_key_material(self, key: bytes) -> None:
        """A plaintext data key, in every spelling a log line or an error message might give it."""
        self.add(
            base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode(),
            key.hex(),
            repr(key)[2:-1],  # the bytes literal's body: b'\x8f...' minus b'...'
        )

    def leaked_in(self, text: str) -> bool:
        with self._lock:
            values = tuple(self._values)
        return any(value in text for value in values)

    def check(self, text: str, what: str = "output") -> None:
        """Fail now if ``text`` (an error body, an exception string, a metric blob) holds a secret."""
        if self.leaked_in(text):
            raise SecretLeak(f"a registered secret appears in {what}")

    def redact(self, text: str) -> str:
        """``text`` with every registered secret masked, longest first (a secret may contain another)."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, "***")
        return text

    def log_handler(self) -> logging.Handler:
        return self._recorder

    def assert_no_leaks(self) -> None:
        for line in self._recorder.lines:
            self.check(line, "a log record")

    def scan_report(self, report: pytest.TestReport, call: pytest.CallInfo[Any]) -> None:
        """Fail ``report`` if this phase's captured output or its failure holds a secret.

        Only the sections captured in this phase are read, so one leak fails one phase. A failure report
        that would print a secret is replaced by its masked text.
        """
        suffix = f" {report.when}"
        leaks = [title for title, content in report.sections if title.endswith(suffix) and self.leaked_in(content)]
        if call.excinfo is not None:
            error = call.excinfo.value
            if self.leaked_in(f"{error!s} {error!r}"):
                leaks.append("the exception")
        printed = report.longreprtext if report.failed else ""
        if printed and self.leaked_in(printed):
            leaks.append("the failure report")
        if not leaks:
            return
        where = ", ".join(dict.fromkeys(leaks))
        report.outcome = "failed"
        masked = f"\n\nthe original report, masked:\n{self.redact(printed)}" if printed else ""
        report.longrepr = f"SecretLeak: a registered secret appears in {where}{masked}"
        report.sections = [(title, self.redact(content)) for title, content in report.sections]


# -- KMS data keys ---------------------------------------------------------------------------------------------

_active: SecretRegistry | None = None
_active_lock = threading.Lock()


def activate(registry: SecretRegistry | None) -> None:
    """Make ``registry`` the one KMS data keys are registered with (``None``: none, between tests)."""
    global _active
    with _active_lock:
        _active = registry


def _register_plaintext_key(parsed: dict[str, Any] | None = None, **_: Any) -> None:
    plaintext = (parsed or {}).get("Plaintext")
    with _active_lock:
        registry = _active
    if registry is not None and isinstance(plaintext, bytes | bytearray):
        registry.add_key_material(bytes(plaintext))


def register_kms_data_keys() -> None:
    """Register, for the whole process, a hook on every KMS GenerateDataKey and Decrypt answer.

    A botocore session initializer: every session made afterwards has the hook, and so every client, including
    the cached ones of ``connvault.wiring``. Call it before the first session is made.
    """
    import botocore

    botocore.register_initializer(_hook_data_keys)


def _hook_data_keys(session: Any) -> None:
    for event in ("after-call.kms.GenerateDataKey", "after-call.kms.Decrypt"):
        session.register(event, _register_plaintext_key)
