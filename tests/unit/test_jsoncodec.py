"""payments_shared.jsoncodec: orjson where it can, the standard library for what orjson refuses, so nothing that
`json` accepted is refused and what is read back is what `json` reads."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from payments_shared import jsoncodec

VALUES: list[Any] = [
    {"amount": 1099, "currency": "usd", "metadata": {"order": "ünïcode ✓"}, "captured": False, "note": None},
    {"nested": [1, 2.5, -3, {"deep": ["x", True]}], "empty": {}, "list": []},
    {"big": 2**70, "negative_big": -(2**65)},  # beyond 64 bits: orjson refuses, json writes it
    {"surrogate": "a\ud800b"},  # a lone surrogate: orjson refuses, json escapes it
    {"float": 0.1, "exp": 1e-7, "large": 12345678.875},
]


@pytest.mark.parametrize("value", VALUES)
def test_round_trips_as_json_does(value: dict[str, Any]) -> None:
    text = jsoncodec.dumps(value)
    assert jsoncodec.loads(text) == json.loads(json.dumps(value))
    assert jsoncodec.loads(text.encode("utf-8", "surrogatepass")) == json.loads(json.dumps(value))
    assert json.loads(text) == json.loads(json.dumps(value))  # what it writes, json reads too


def test_text_written_by_json_reads_back_the_same() -> None:
    for value in VALUES:
        assert jsoncodec.loads(json.dumps(value)) == json.loads(json.dumps(value))


def test_output_is_compact_utf8_in_insertion_order() -> None:
    assert jsoncodec.dumps_bytes({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'.encode()
    assert jsoncodec.dumps({"b": [1, None]}) == '{"b":[1,null]}'


def test_non_string_keys_are_written_as_json_writes_them() -> None:
    value = {1: "one", None: "none", 2.5: "half"}
    assert (
        jsoncodec.loads(jsoncodec.dumps(value))
        == json.loads(json.dumps(value))
        == {"1": "one", "null": "none", "2.5": "half"}
    )


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize("value", [{"when": datetime.now(UTC)}, {"point": _Point(1)}, {"raw": b"bytes"}, {1, 2}])
def test_what_json_refuses_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        jsoncodec.dumps(value)


@pytest.mark.parametrize("text", ["{", '{"a": 1} x', "", '{"a": "\\ud80"}'])
def test_malformed_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text)


def test_a_detached_copy_is_equal_independent_and_refuses_what_json_refuses() -> None:
    original: dict[str, Any] = {"nested": {"list": [1, "two"]}, "key": 2**70}
    copied = jsoncodec.detached_copy(original)
    assert copied == original
    copied["nested"]["list"].append(3)
    assert original["nested"]["list"] == [1, "two"]
    with pytest.raises(TypeError):
        jsoncodec.detached_copy({"when": datetime.now(UTC)})
