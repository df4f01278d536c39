"""``json_text`` writes by orjson only what ``json`` would write the same, byte for byte: the answers as the resolver
writes them (compact, ASCII) and log records as Powertools' formatter does (compact, non-ASCII as it is,
``default=str``). The token route's bodies are also compared with the resolver's in ``tests/api/test_token_route.py``,
and ``info_line`` with ``logger.info`` in ``tests/unit/test_info_line.py``."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from connvault.json_text import answer_json, log_json


def as_answer(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def as_log(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


@dataclasses.dataclass
class _Record:
    field: str


class _Plain(enum.Enum):
    A = "a"


class _Number(enum.IntEnum):
    FIVE = 5


class _Text(enum.StrEnum):
    C = "c"


ODD = [
    "café",  # escaped in answers, as it is in logs
    "\u2028\u2029",
    "😀",
    "\ud800",  # a lone surrogate, which orjson refuses
    "",
    2**64,  # past orjson's integers
    -(2**63),
    0,
    True,
    None,
    [],
    {},
    ("a", 1),
    {"nested": [{"a": None, "b": [1, "x"]}]},
    1e-05,  # orjson writes 0.00001
    2.5e16,
    float("nan"),  # orjson writes null
    0.1,
    _Number.FIVE,
    _Text.C,
]


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_is_written_as_json_writes_it(code: int) -> None:
    text = f"a{chr(code)}b"
    record = {"access_token": text, "scopes": [text]}

    assert answer_json(record) == as_answer(record)
    assert log_json(record) == as_log(record)


@pytest.mark.parametrize("value", ODD, ids=repr)
def test_values_where_the_encoders_differ_are_written_as_json_writes_them(value: Any) -> None:
    assert answer_json({"value": value}) == as_answer({"value": value})
    assert log_json({"value": value}) == as_log({"value": value})


@pytest.mark.parametrize(
    "value",
    [_Plain.A, uuid.UUID(int=7), datetime(2026, 1, 1, tzinfo=UTC), decimal.Decimal("1.10"), _Record("x"), {1: "a"}],
    ids=repr,
)
def test_what_only_default_str_writes_is_written_as_powertools_writes_it(value: Any) -> None:
    assert log_json({"value": value, "n": 1}) == as_log({"value": value, "n": 1})


@pytest.mark.parametrize(
    "value", [_Plain.A, _Record("x"), datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=7)], ids=repr
)
def test_what_json_refuses_in_an_answer_is_refused_not_written_by_orjson(value: object) -> None:
    with pytest.raises(TypeError):
        as_answer({"value": value})
    with pytest.raises(TypeError):
        answer_json({"value": value})
