"""Answers are written by orjson (``answers.answer_json``) and must read exactly as ``json.dumps`` with compact
separators writes them, which is what the resolver's routes answer: the token route's bodies are compared with the
resolver's in ``tests/api/test_token_route.py``; here, the text of every ASCII character and of the values where
the two encoders differ."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connvault.api.answers import answer_json


def dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


@pytest.mark.parametrize("code", range(128))
def test_every_ascii_character_is_written_as_json_writes_it(code: int) -> None:
    text = f"a{chr(code)}b"

    assert answer_json({"access_token": text, "scopes": [text]}) == dumps({"access_token": text, "scopes": [text]})


@pytest.mark.parametrize(
    "value",
    [
        "café",  # json escapes what is not ASCII; orjson writes UTF-8
        "\u2028\u2029",
        "😀",  # a surrogate pair in json's escape
        "\ud800",  # a lone surrogate, which orjson refuses
        "",
        2**64,  # past orjson's integers
        -(2**63),
        0,
        True,
        None,
        [],
        {},
        {"nested": [{"a": None, "b": [1, "x"]}]},
    ],
    ids=repr,
)
def test_values_where_the_encoders_differ_are_written_as_json_writes_them(value: Any) -> None:
    assert answer_json({"value": value}) == dumps({"value": value})


@dataclasses.dataclass
class _Record:
    field: str


@pytest.mark.parametrize("value", [_Record("x"), datetime(2026, 1, 1, tzinfo=UTC)], ids=type)
def test_what_json_refuses_is_refused_not_written_by_orjson(value: object) -> None:
    with pytest.raises(TypeError):
        dumps({"value": value})
    with pytest.raises(TypeError):
        answer_json({"value": value})
