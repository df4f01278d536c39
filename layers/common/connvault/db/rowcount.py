"""How many rows an UPDATE or DELETE changed: the one place that reads a result's ``rowcount``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sqlalchemy import Delete, Update
    from sqlalchemy.engine import CursorResult
    from sqlalchemy.orm import Session


def rows_changed(session: Session, statement: Update | Delete) -> int:
    """Run ``statement`` in ``session``; the number of rows it changed."""
    # Session.execute is typed to answer a Result for any statement; an UPDATE or DELETE without RETURNING
    # answers a CursorResult, the class that counts rows (SQLAlchemy's documented way to reach it is a cast).
    return cast("CursorResult[Any]", session.execute(statement)).rowcount
