"""The one retry helper (issue 15.3): how many tries, what it retries, how long it waits."""

from __future__ import annotations

import pytest

from connvault.errors import DatabaseUnavailable, NotFound
from connvault.retry import doubling, retry


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_a_named_failure_is_tried_again_with_the_waits_asked_for() -> None:
    waits: list[float] = []
    action = Flaky([DatabaseUnavailable(), DatabaseUnavailable()])

    result = retry(action, attempts=5, on=(DatabaseUnavailable,), wait=doubling(0.2, 2.0), sleep=waits.append)

    assert (result, action.calls, waits) == ("done", 3, [0.2, 0.4])


def test_the_last_failure_propagates_after_the_attempts_and_waits_stop_at_the_cap() -> None:
    waits: list[float] = []
    action = Flaky([DatabaseUnavailable() for _ in range(6)])

    with pytest.raises(DatabaseUnavailable):
        retry(action, attempts=6, on=(DatabaseUnavailable,), wait=doubling(0.5, 2.0), sleep=waits.append)

    assert action.calls == 6
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_a_failure_not_named_propagates_at_once_and_no_wait_means_no_sleep() -> None:
    slept: list[float] = []
    action = Flaky([NotFound()])

    with pytest.raises(NotFound):
        retry(action, attempts=3, on=(DatabaseUnavailable,), sleep=slept.append)
    assert action.calls == 1

    assert retry(Flaky([DatabaseUnavailable()]), attempts=2, on=(DatabaseUnavailable,), sleep=slept.append) == "done"
    assert slept == []
