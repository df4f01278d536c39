"""A wrapper that keeps a secret out of every ``repr``, ``str``, log line and traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Redacted[T]:
    """Holds a secret; printing it shows ``***``. Call ``reveal()`` only where the value leaves us."""

    _value: T

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return "Redacted('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)
