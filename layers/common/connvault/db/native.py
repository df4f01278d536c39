"""The part of pg8000's native API that the prepared hot paths use (``fast_reads``, the refresh statements), as
types: pg8000 ships none, so mypy sees its objects as ``Any`` and these say what the code relies on."""

from __future__ import annotations

from typing import Any, Protocol


class PreparedStatement(Protocol):
    """``pg8000.native.Connection.prepare(sql)``: a statement parsed once, run by name with its parameters."""

    def run(self, **params: Any) -> list[list[Any]]:
        """The rows, each a list of column values (an empty list for a statement that returns none)."""
        ...
