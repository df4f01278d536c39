"""The secret scanner: tests register the secrets they create; any of them in a log record fails the test."""

from __future__ import annotations

import logging


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
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._recorder = _Recorder()
        self.texts: list[str] = []

    def add(self, *values: str | bytes | None) -> None:
        for value in values:
            if value:
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                if len(text) >= 8:
                    self._values.add(text)

    def check(self, text: str, what: str = "output") -> None:
        """Fail now if ``text`` (an error body, an exception string, a metric blob) holds a secret."""
        for value in self._values:
            assert value not in text, f"a registered secret appears in {what}"

    def log_handler(self) -> logging.Handler:
        return self._recorder

    def assert_no_leaks(self) -> None:
        for line in self._recorder.lines:
            self.check(line, "a log record")
