"""``python -m connvault.admin import --tenant T FILE.jsonl``: a migration file of any size through the bulk
import (``services/imports.py``), one batch at a time, resumable after a failure.

The file holds one grant per line, the fields of ``POST /connections/import``'s items (``provider``,
``end_user_id``, ``alias``, ``refresh_token``, ``access_token``, ``expires_at``, ``scopes``, ``token_type``,
``metadata``). It is read as a stream: memory holds one batch, whatever the file's size or its lines' lengths.
A line is read up to ``MAX_LINE_BYTES``: a longer one is ``invalid`` with code ``line_too_long`` and the rest of
it is read past a piece at a time, never held; and a batch ends early once its lines reach ``MAX_BATCH_BYTES``.

Resuming: after each batch the byte offset reached and the counts so far go to ``FILE.progress`` (written
atomically). Run the same command again after a failure (a crash, the database gone) and it starts after the
last finished batch; the import being idempotent per (provider, end user, alias), a batch cut off half-way is
answered ``exists`` for what it had stored, at no provider call. ``--restart`` ignores the progress file.

Items whose provider failed (``unavailable``) or that the call had no time or rate for (``deferred``) are sent
again until ``--retries`` rounds have settled none of them (an item whose provider failed, at most ``--retries``
times more); then they count as failed. Every item that does not end ``created`` or ``exists`` is written to
``FILE.errors`` as its line number, status, code and the field at fault: never the line itself, which holds
tokens. Progress goes to stderr, the counts to stdout at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from connvault.api.body import strict_json
from connvault.db.uow import UnitOfWork
from connvault.errors import InvalidInput
from connvault.services.imports import MAX_ITEMS, InvalidItem, ItemResult, ItemStatus, import_grants

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from uuid import UUID

    from connvault.services.grants import ImportedGrantInput

MAX_LINE_BYTES = 1024 * 1024
"""The longest line read, its newline not counted. The largest grant the import accepts is some 300 KB written
with every character escaped (two tokens of 8,192 characters, 100 scopes of 256, 16 KB of metadata); without a
limit, ``readline`` would hold a line of any length in memory, newline or not."""
MAX_BATCH_BYTES = 10 * 1024 * 1024
"""A batch ends early once the lines it holds reach this many bytes (read as they stand): no more than one
request of the API can carry under API Gateway's 10 MB payload limit, so a batch of 1,000 long lines holds no
more than the API path would. With ``MAX_LINE_BYTES`` it bounds what a batch holds, whatever the file."""
LINE_TOO_LONG = "line_too_long"
_TOO_LONG = InvalidItem(None, f"the line is longer than {MAX_LINE_BYTES:,} bytes", code=LINE_TOO_LONG)

RETRIED = frozenset({ItemStatus.UNAVAILABLE, ItemStatus.DEFERRED})
DONE = frozenset({ItemStatus.CREATED, ItemStatus.EXISTS})
MAX_RETRY_WAIT_SECONDS = 60.0
BAR_WIDTH = 30

type Importer = Callable[[Sequence[ImportedGrantInput | InvalidItem]], list[ItemResult]]
type Parser = Callable[[Sequence[Any]], list[ImportedGrantInput | InvalidItem]]


class ProgressMismatch(Exception):
    """The progress file belongs to another version of the file (or another tenant); nothing was imported."""


@dataclass(slots=True)
class Progress:
    """How far an import got: saved after every batch, read back to resume."""

    tenant_id: str
    size: int
    offset: int = 0
    line: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def save(self, path: Path) -> None:
        scratch = path.with_name(path.name + ".tmp")
        document = {"tenant_id": self.tenant_id, "size": self.size, "offset": self.offset, "line": self.line}
        scratch.write_text(json.dumps({**document, "counts": dict(self.counts)}), encoding="utf-8")
        os.replace(scratch, path)

    @classmethod
    def load(cls, path: Path) -> Progress:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                tenant_id=str(document["tenant_id"]),
                size=int(document["size"]),
                offset=int(document["offset"]),
                line=int(document["line"]),
                counts=Counter({str(name): int(count) for name, count in document["counts"].items()}),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ProgressMismatch(f"{path.name} is not a progress file; use --restart to start over") from None


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    item: ImportedGrantInput | InvalidItem


def import_file(
    path: Path,
    tenant_id: UUID,
    *,
    parse: Parser,
    verify: bool = True,
    batch_size: int = MAX_ITEMS,
    retries: int = 3,
    restart: bool = False,
    err: TextIO,
    importer: Importer | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Progress:
    """Import ``path`` for ``tenant_id`` from where an earlier run stopped; the final counts. Raises
    ``ProgressMismatch``, and whatever stops a batch (the database unavailable...) after saving the progress
    made before it."""
    batch_size = max(1, min(batch_size, MAX_ITEMS))
    size = path.stat().st_size
    progress_path, errors_path = _beside(path, ".progress"), _beside(path, ".errors")
    progress = Progress(str(tenant_id), size)
    if progress_path.exists() and not restart:
        progress = Progress.load(progress_path)
        if progress.tenant_id != str(tenant_id) or progress.size != size:
            raise ProgressMismatch(f"{progress_path.name} is another import's progress; use --restart to start over")
    elif errors_path.exists():
        errors_path.unlink()
    run = importer or (lambda items: import_grants(UnitOfWork(tenant_id), items, verify=verify))
    with path.open("rb") as source, errors_path.open("a", encoding="utf-8") as errors:
        source.seek(progress.offset)
        for batch, offset, last_line in _batches(source, progress.line, batch_size, parse):
            results = _with_retries(batch, run, retries, sleep)
            for line, result in zip(batch, results, strict=True):
                outcome = (
                    result.status.value
                    if result.status in DONE | {ItemStatus.INVALID, ItemStatus.REFUSED, ItemStatus.QUOTA_EXCEEDED}
                    else "failed"
                )
                progress.counts[outcome] += 1
                if result.status not in DONE:
                    errors.write(_error_line(line.number, result, outcome))
            errors.flush()
            progress.offset, progress.line = offset, last_line
            progress.save(progress_path)
            _draw(err, progress)
    err.write("\n")
    return progress


def _batches(
    source: BinaryIO, first_line: int, batch_size: int, parse: Parser
) -> Iterator[tuple[list[_Line], int, int]]:
    """``(lines, offset after them, number of the last)`` for each batch of non-blank lines: at most ``batch_size``
    lines, ended early once they hold ``MAX_BATCH_BYTES``."""
    numbers: list[int] = []
    documents: list[Any] = []
    held = 0
    number = first_line
    while raw := source.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            del raw  # not held while the rest is read past
            _read_past_line(source)
            document: Any = _TOO_LONG
        elif not raw.strip():
            continue
        else:
            held += len(raw)
            document = _document(raw)
        numbers.append(number)
        documents.append(document)
        if len(numbers) == batch_size or held >= MAX_BATCH_BYTES:
            yield _parsed(numbers, documents, parse), source.tell(), number
            numbers, documents, held = [], [], 0
    if numbers:
        yield _parsed(numbers, documents, parse), source.tell(), number


def _read_past_line(source: BinaryIO) -> None:
    """Read to the end of the current line (or of the file) a piece at a time, keeping none of it."""
    while (piece := source.readline(MAX_LINE_BYTES)) and not piece.endswith(b"\n"):
        pass


def _document(raw: bytes) -> Any:
    """The line's JSON value, decoded as strictly as a request body (``api/body.py``: a repeated key, NaN or a
    lone surrogate is refused, not read one way here and another there), or an ``InvalidItem`` naming the rule it
    breaks. A value that is no object is ``parse``'s to answer, as the API answers such an item."""
    try:
        return strict_json(raw.decode("utf-8-sig"), subject="the line")
    except InvalidInput as exc:
        return InvalidItem(None, exc.message)
    except ValueError:  # not UTF-8, or not JSON
        return InvalidItem(None, "the line is not JSON")


def _parsed(numbers: list[int], documents: list[Any], parse: Parser) -> list[_Line]:
    readable = [document for document in documents if not isinstance(document, InvalidItem)]
    parsed = iter(parse(readable))
    items = [document if isinstance(document, InvalidItem) else next(parsed) for document in documents]
    return [_Line(number, item) for number, item in zip(numbers, items, strict=True)]


def _with_retries(batch: list[_Line], run: Importer, retries: int, sleep: Callable[[float], None]) -> list[ItemResult]:
    """The batch's results; items answered ``unavailable`` or ``deferred`` are sent again after the longest wait
    a provider or the rate limit asked for (capped). A round that settles none of them counts against ``retries``;
    one that settles some does not: the tenant's rate admits a large verified batch a share at a time, and a
    deferred item was not sent. Each item's provider, though, is asked at most ``retries + 1`` times: an item
    answered ``unavailable`` that often is not sent again. Otherwise a provider settling one item a round would
    be sent every item still left, round after round: some n²/2 calls for a batch of n."""
    results = run([line.item for line in batch])
    failures = [int(result.status is ItemStatus.UNAVAILABLE) for result in results]
    attempt = 0
    while attempt < retries:
        again = [
            index for index, result in enumerate(results) if result.status in RETRIED and failures[index] <= retries
        ]
        if not again:
            break
        asked = [results[index].retry_after or 0.0 for index in again]
        sleep(min(max([2.0 ** (attempt + 1), *asked]), MAX_RETRY_WAIT_SECONDS))
        for index, result in zip(again, run([batch[index].item for index in again]), strict=True):
            results[index] = result
            failures[index] += result.status is ItemStatus.UNAVAILABLE
        if all(results[index].status in RETRIED for index in again):
            attempt += 1
    return results


def _error_line(number: int, result: ItemResult, outcome: str) -> str:
    record = {"line": number, "status": outcome, "code": result.code, "field": result.field, "message": result.message}
    return json.dumps(record) + "\n"


def _draw(err: TextIO, progress: Progress) -> None:
    share = progress.offset / progress.size if progress.size else 1.0
    filled = int(share * BAR_WIDTH)
    counts = " ".join(f"{name} {count:,}" for name, count in sorted(progress.counts.items()))
    err.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%}  line {progress.line:,}  {counts}")
    err.flush()


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def summary(progress: Progress, path: Path) -> str:
    """The closing line: what became of every line of the file."""
    counts = progress.counts
    total = sum(counts.values())
    parts = ", ".join(
        f"{name} {counts.get(name, 0):,}" for name in ("created", "exists", "invalid", "refused", "failed")
    )
    trouble = total - counts.get("created", 0) - counts.get("exists", 0)
    tail = f"; see {_beside(path, '.errors').name}" if trouble else ""
    return f"{total:,} grants: {parts}{tail}"
