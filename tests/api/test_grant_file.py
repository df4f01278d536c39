"""``python -m connvault.admin import``: a JSONL file of grants streamed through the bulk import, with progress,
counts, an errors file without secrets, retries, and resuming after a failure.

``main`` runs in-process: the command seals what it stores, and moto's KMS lives in this process only.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from connvault import grant_file
from connvault.api.new_connections import import_items
from connvault.db.uow import UnitOfWork
from connvault.errors import DatabaseUnavailable
from connvault.services.imports import ItemResult, ItemStatus, import_grants
from demo_provider import Fault
from tests.api.conftest import Api
from tests.api.test_admin import run_main
from tests.api.test_imports import grant_from
from tests.support.factories import owner

if TYPE_CHECKING:
    from collections.abc import Sequence


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def stored_end_users(db) -> list[str]:
    with owner(db) as connection:
        return sorted(row[0] for row in connection.run("SELECT end_user_id FROM connections"))


def import_unverified(api: Api, path: Path) -> tuple[str, list[dict[str, Any]]]:
    """Run the command on ``path`` (no provider call): its summary line and the errors file's records, which must
    hold no secret."""
    code, out, err = run_main("import", str(path), "--tenant", str(api.tenant.tenant_id), "--no-verify")
    assert code == 0, err
    errors_text = (path.parent / (path.name + ".errors")).read_text()
    api.secrets.check(errors_text, "the errors file")
    return out, [json.loads(line) for line in errors_text.splitlines()]


def test_a_file_is_imported_batch_by_batch_with_progress_counts_and_an_errors_file(
    api: Api, provider, db, tmp_path
) -> None:
    live = [grant_from(provider, api) for _ in range(3)]
    path = write_lines(
        tmp_path / "grants.jsonl",
        [
            {"provider": "demo", "end_user_id": "u1", **live[0]},
            "",
            "{not json",
            {"provider": "demo", "end_user_id": "u2", **live[1], "scopes": ["read"]},
            {"provider": "demo", "end_user_id": "u3", "refresh_token": "rt-never-issued-0001"},
            {"provider": "demo", "end_user_id": "u4", "access_token": "at-lonely-0001"},
            {"provider": "demo", "end_user_id": "u5", **live[2]},
        ],
    )
    api.secrets.add("rt-never-issued-0001", "at-lonely-0001")

    code, out, err = run_main("import", str(path), "--tenant", str(api.tenant.tenant_id), "--batch-size", "2")

    assert code == 0, err
    assert out.strip() == "6 grants: created 3, exists 0, invalid 2, refused 1, failed 0; see grants.jsonl.errors"
    assert "100.0%" in err
    assert stored_end_users(db) == ["u1", "u2", "u5"]
    errors = [json.loads(line) for line in (tmp_path / "grants.jsonl.errors").read_text().splitlines()]
    assert [(e["line"], e["status"], e["field"]) for e in errors] == [
        (3, "invalid", None),
        (5, "refused", "refresh_token"),
        (6, "invalid", "refresh_token"),
    ]
    assert provider.stats().refresh_token_reuse == 0


def test_a_line_that_is_no_json_object_is_answered_as_the_api_answers_such_an_item(api: Api, db, tmp_path) -> None:
    api.secrets.add("rt-kept-1234567890", "rt-in-a-list-0001")
    path = write_lines(
        tmp_path / "grants.jsonl",
        [["rt-in-a-list-0001"], 5, {"provider": "demo", "end_user_id": "kept", "refresh_token": "rt-kept-1234567890"}],
    )

    out, errors = import_unverified(api, path)

    assert out.startswith("3 grants: created 1, exists 0, invalid 2,")
    assert [(e["line"], e["code"], e["field"], e["message"]) for e in errors] == [
        (1, "validation_error", None, "the item is not valid (model_type)"),
        (2, "validation_error", None, "the item is not valid (model_type)"),
    ]
    assert stored_end_users(db) == ["kept"]


def test_a_line_that_repeats_a_key_is_invalid_as_the_api_refuses_such_a_body(api: Api, db, tmp_path) -> None:
    # An outside probe: plain json.loads kept the last of the repeated values and stored end user "dup2".
    api.secrets.add("rt-dup-1234567890", "rt-nested-1234567890", "rt-kept-1234567890")
    path = write_lines(
        tmp_path / "grants.jsonl",
        [
            '{"provider":"demo","end_user_id":"dup","end_user_id":"dup2","refresh_token":"rt-dup-1234567890"}',
            '{"provider":"demo","end_user_id":"nested","refresh_token":"rt-nested-1234567890",'
            '"metadata":{"team":"a","team":"b"}}',
            {"provider": "demo", "end_user_id": "kept", "refresh_token": "rt-kept-1234567890"},
        ],
    )

    out, errors = import_unverified(api, path)

    assert out.startswith("3 grants: created 1, exists 0, invalid 2,")
    assert [(e["line"], e["status"], e["field"], e["message"]) for e in errors] == [
        (1, "invalid", None, "the line repeats a key in one object"),
        (2, "invalid", None, "the line repeats a key in one object"),
    ]
    assert stored_end_users(db) == ["kept"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"provider":"demo","end_user_id":"u","refresh_token":"rt-rule-1234567890","metadata":{"n":NaN}}', "NaN"),
        ('{"provider":"demo","end_user_id":"u","refresh_token":"rt-rule-1234567890","metadata":{"n":1e400}}', "large"),
        ('{"provider":"demo","end_user_id":"\\ud800","refresh_token":"rt-rule-1234567890"}', "surrogate"),
        (b'{"provider":"demo","end_user_id":"\xff","refresh_token":"rt-rule-1234567890"}', "not JSON"),
    ],
)
def test_a_line_breaking_any_rule_of_a_request_body_is_invalid_and_named_by_its_rule(
    api: Api, db, tmp_path, line: str | bytes, message: str
) -> None:
    api.secrets.add("rt-rule-1234567890")
    path = tmp_path / "grants.jsonl"
    path.write_bytes((line if isinstance(line, bytes) else line.encode()) + b"\n")

    out, (error,) = import_unverified(api, path)

    assert out.startswith("1 grants: created 0, exists 0, invalid 1,")
    assert error["message"].startswith("the line ") and message in error["message"]
    assert stored_end_users(db) == []


def test_running_it_again_after_it_finished_changes_nothing(api: Api, provider, db, tmp_path) -> None:
    path = write_lines(
        tmp_path / "grants.jsonl", [{"provider": "demo", "end_user_id": "u1", **grant_from(provider, api)}]
    )
    tenant = str(api.tenant.tenant_id)
    assert run_main("import", str(path), "--tenant", tenant)[0] == 0
    calls = provider.stats().token_calls

    code, out, _ = run_main("import", str(path), "--tenant", tenant)

    assert code == 0
    assert out.startswith("1 grants: created 1")
    assert provider.stats().token_calls == calls
    code, out, _ = run_main("import", str(path), "--tenant", tenant, "--restart")
    assert out.startswith("1 grants: created 0, exists 1")
    assert provider.stats().token_calls == calls


def test_an_import_stopped_by_a_failure_resumes_after_the_last_finished_batch(api: Api, provider, db, tmp_path) -> None:
    lines = [{"provider": "demo", "end_user_id": f"u{n}", **grant_from(provider, api)} for n in range(6)]
    path = write_lines(tmp_path / "grants.jsonl", lines)
    tenant = api.tenant.tenant_id
    sent: list[int] = []

    def failing_on_the_second_batch(items):
        sent.append(len(items))
        if len(sent) == 2:
            raise DatabaseUnavailable("the database is unavailable; retry shortly")
        return import_grants(UnitOfWork(tenant), items)

    with pytest.raises(DatabaseUnavailable):
        grant_file.import_file(
            path, tenant, parse=import_items, batch_size=2, err=io.StringIO(), importer=failing_on_the_second_batch
        )
    assert stored_end_users(db) == ["u0", "u1"]
    refreshes = provider.stats().token_calls["refresh_token"]

    code, out, _ = run_main("import", str(path), "--tenant", str(tenant), "--batch-size", "2")

    assert code == 0
    assert out.strip() == "6 grants: created 6, exists 0, invalid 0, refused 0, failed 0"
    assert stored_end_users(db) == [f"u{n}" for n in range(6)]
    assert provider.stats().token_calls["refresh_token"] == refreshes + 4  # lines 1-2 were not sent again


def test_items_whose_provider_failed_are_sent_again_before_they_count_as_failed(
    api: Api, provider, db, tmp_path
) -> None:
    path = write_lines(
        tmp_path / "grants.jsonl", [{"provider": "demo", "end_user_id": "u1", **grant_from(provider, api)}]
    )
    provider.inject(Fault.rate_limited("2"), Fault.server_error())
    waits: list[float] = []

    progress = grant_file.import_file(
        path, api.tenant.tenant_id, parse=import_items, err=io.StringIO(), sleep=waits.append
    )

    assert progress.counts == {"created": 1}
    assert waits == [2.0, 4.0]
    path2 = write_lines(
        tmp_path / "more.jsonl", [{"provider": "demo", "end_user_id": "u2", **grant_from(provider, api)}]
    )
    provider.inject(*[Fault.server_error()] * 3)
    failed = grant_file.import_file(
        path2, api.tenant.tenant_id, parse=import_items, retries=2, err=io.StringIO(), sleep=waits.append
    )
    assert failed.counts == {"failed": 1}
    (error,) = [json.loads(line) for line in (tmp_path / "more.jsonl.errors").read_text().splitlines()]
    assert (error["line"], error["status"], error["code"]) == (1, "failed", "provider_unavailable")


def test_a_batch_the_tenants_rate_admits_a_share_at_a_time_is_sent_again_until_done(tmp_path) -> None:
    # Given an import that the tenant's rate lets verify 2 items per call, the rest deferred as rate_limited
    path = write_lines(tmp_path / "grants.jsonl", [{"n": n} for n in range(7)])
    rounds: list[int] = []

    def two_at_a_time(items: Sequence[Any]) -> list[ItemResult]:
        rounds.append(len(items))
        return [
            ItemResult(index, ItemStatus.CREATED)
            if index < 2
            else ItemResult(index, ItemStatus.DEFERRED, code="rate_limited", retry_after=1.0)
            for index in range(len(items))
        ]

    waits: list[float] = []

    # When it runs with a single retry
    progress = grant_file.import_file(
        path,
        uuid4(),
        parse=lambda documents: list(documents),
        retries=1,
        err=io.StringIO(),
        importer=two_at_a_time,
        sleep=waits.append,
    )

    # Then every round that settled some items went on without spending the retry
    assert rounds == [7, 5, 3, 1]
    assert progress.counts == {"created": 7}
    assert waits == [2.0, 2.0, 2.0]


def test_a_provider_settling_one_item_a_round_is_asked_at_most_retries_plus_one_times_per_item(tmp_path) -> None:
    """Probe 2026-11-30: each round sent every item still unavailable again, and a round that settled one did not
    count against the retries, so such a provider was called some n²/2 times for a batch of n."""
    # Given a provider that settles the first item it is sent in each round and fails the others
    path = write_lines(tmp_path / "grants.jsonl", [{"n": n} for n in range(20)])
    sent: Counter[int] = Counter()

    def one_a_round(items: Sequence[Any]) -> list[ItemResult]:
        sent.update(item["n"] for item in items)
        return [
            ItemResult(index, ItemStatus.CREATED)
            if index == 0
            else ItemResult(index, ItemStatus.UNAVAILABLE, code="provider_unavailable")
            for index in range(len(items))
        ]

    # When the file is imported with three retries
    progress = grant_file.import_file(
        path,
        uuid4(),
        parse=lambda documents: list(documents),
        retries=3,
        err=io.StringIO(),
        importer=one_a_round,
        sleep=lambda _: None,
    )

    # Then no item was sent more than four times, 74 calls in all rather than 210, and the rest count as failed
    assert max(sent.values()) == 4
    assert sum(sent.values()) == 20 + 19 + 18 + 17
    assert progress.counts == {"created": 4, "failed": 16}


def test_a_line_longer_than_the_limit_is_invalid_by_its_number_and_its_neighbours_go_ahead(
    api: Api, db, tmp_path
) -> None:
    """Probe 2026-11-30 (F4): ``readline()`` took a line of any length, and a batch of them, into memory."""
    # Given a line past the limit, holding a token, between two good lines
    token = "rt-too-long-1234567890"
    api.secrets.add(token, "rt-before-1234567890", "rt-after-1234567890")
    path = tmp_path / "grants.jsonl"
    with path.open("wb") as out:
        out.write(b'{"provider":"demo","end_user_id":"before","refresh_token":"rt-before-1234567890"}\n')
        out.write(b'{"provider":"demo","end_user_id":"long","refresh_token":"' + token.encode())
        out.write(b"x" * grant_file.MAX_LINE_BYTES + b'"}\n')
        out.write(b'{"provider":"demo","end_user_id":"after","refresh_token":"rt-after-1234567890"}')  # no newline

    # When it is imported
    out, errors = import_unverified(api, path)

    # Then the long line is invalid, named by its number and a code, and nothing of it is shown anywhere
    assert out.startswith("3 grants: created 2, exists 0, invalid 1,")
    assert errors == [
        {
            "line": 2,
            "status": "invalid",
            "code": "line_too_long",
            "field": None,
            "message": f"the line is longer than {grant_file.MAX_LINE_BYTES:,} bytes",
        }
    ]
    api.secrets.check(out, "the command's output")
    assert stored_end_users(db) == ["after", "before"]


@pytest.mark.parametrize("newline", [b"\n", b""], ids=["newline", "end of file"])
def test_a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_too_long(tmp_path, newline: bytes) -> None:
    path = tmp_path / "grants.jsonl"
    padding = grant_file.MAX_LINE_BYTES - len(b'{"n":""}')
    results: list[object] = []

    for extra in (0, 1):
        path.write_bytes(b'{"n":"' + b"x" * (padding + extra) + b'"}' + newline)
        grant_file.import_file(
            path,
            uuid4(),
            parse=lambda documents: [grant_file.InvalidItem("n", "read") for _ in documents],
            err=io.StringIO(),
            importer=lambda items: [
                ItemResult(index, ItemStatus.INVALID, code=item.code) for index, item in enumerate(items)
            ],
            restart=True,
        )
        (error,) = [json.loads(line) for line in (tmp_path / "grants.jsonl.errors").read_text().splitlines()]
        results.append(error["code"])

    assert results == ["validation_error", "line_too_long"]


def test_memory_holds_neither_a_long_line_nor_more_than_a_batchs_bytes_whatever_the_file(tmp_path) -> None:
    # Given a 24 MiB line, then 30 lines each just under the line limit (27 MiB in all)
    path = tmp_path / "grants.jsonl"
    under = grant_file.MAX_LINE_BYTES - 100
    with path.open("wb") as out:
        out.write(b'{"refresh_token":"' + b"x" * (24 * grant_file.MAX_LINE_BYTES) + b'"}\n')
        for n in range(30):
            out.write(json.dumps({"n": n, "refresh_token": "y" * under}).encode() + b"\n")
    held: list[int] = []

    def parse(documents: Sequence[Any]) -> list[Any]:
        held.append(sum(len(document["refresh_token"]) for document in documents))
        return [grant_file.InvalidItem(None, "parsed") for _ in documents]

    # When it is imported, memory traced
    tracemalloc.start()
    try:
        progress = grant_file.import_file(
            path,
            uuid4(),
            parse=parse,
            err=io.StringIO(),
            importer=lambda items: [ItemResult(index, ItemStatus.INVALID) for index in range(len(items))],
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then every line was answered, no batch held more than its byte budget and a line, nor the process the long line
    assert progress.counts == {"invalid": 31}
    assert len(held) > 1
    assert max(held) < grant_file.MAX_BATCH_BYTES + grant_file.MAX_LINE_BYTES
    assert peak < 2 * grant_file.MAX_BATCH_BYTES


def test_a_large_file_streams_through_in_batches_of_a_thousand(api: Api, provider, db, tmp_path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for n in range(2500):
            out.write(json.dumps({"provider": "demo", "end_user_id": f"u{n:05d}", "refresh_token": f"rt-big-{n:05d}"}))
            out.write("\n")
    api.secrets.add(*(f"rt-big-{n:05d}" for n in range(2500)))
    batches: list[int] = []

    def counting(items):
        batches.append(len(items))
        return import_grants(UnitOfWork(api.tenant.tenant_id), items, verify=False)

    progress = grant_file.import_file(
        path, api.tenant.tenant_id, parse=import_items, err=io.StringIO(), importer=counting
    )

    assert batches == [1000, 1000, 500]
    assert progress.counts == {"created": 2500}
    assert len(stored_end_users(db)) == 2500


def test_a_progress_file_of_another_file_is_refused(api: Api, tmp_path) -> None:
    path = write_lines(
        tmp_path / "grants.jsonl", [{"provider": "demo", "end_user_id": "u1", "refresh_token": "rt-x-123456"}]
    )
    api.secrets.add("rt-x-123456")
    (tmp_path / "grants.jsonl.progress").write_text(
        json.dumps({"tenant_id": "x", "size": 1, "offset": 0, "line": 0, "counts": {}})
    )

    code, _, err = run_main("import", str(path), "--tenant", str(api.tenant.tenant_id), "--no-verify")

    assert code == 1
    assert "another import's progress; use --restart" in err
    assert run_main("import", str(path), "--tenant", str(api.tenant.tenant_id), "--no-verify", "--restart")[0] == 0


def test_a_missing_file_is_a_clean_error(api: Api, tmp_path) -> None:
    code, _, err = run_main("import", str(tmp_path / "nope.jsonl"), "--tenant", str(api.tenant.tenant_id))

    assert code == 1
    assert err.startswith("error: cannot read nope.jsonl")
