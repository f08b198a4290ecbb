"""Reading a request body: size-limited read, JSON parse, the card-data guard (before anything else looks at
the data), then strict validation into a pydantic model with errors naming the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from payments_shared.carddata import contains_card_number
from payments_shared.errors import ApiError, invalid
from payments_shared.http.errors import api_error_from_validation
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def raw_card_data_error() -> ApiError:
    return invalid(
        "The request contains what looks like a card number. Send a payment-method token, never card data.",
        code="raw_card_data",
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: `json.loads(raw, parse_constant=…)` would build a decoder per call. The decode below is what
# json.loads does with bytes (UTF-8/16/32 detected).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except RecursionError:  # the parser nests one Python call per level: a few hundred levels exhaust it
        raise invalid("The JSON in the request body is nested too deeply.", code="invalid_json") from None
    except ValueError:  # JSONDecodeError, bad UTF-8, absurdly long integers
        raise invalid("Malformed JSON in the request body.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    return data


def holds_card_number(value: Any) -> bool:
    """True when any string (key or value, at any depth) — or any integer's digits — holds a card number. Walks
    with its own stack, not by recursion: a body may nest as deep as the parser allowed."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if contains_card_number(item):
                return True
        elif isinstance(item, int) and not isinstance(item, bool):
            if contains_card_number(str(item)):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, refused (413/400/400 raw_card_data) before it is used for anything."""
    data = parse_json_object(await request.body())
    if holds_card_number(data):
        raise raw_card_data_error()
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise api_error_from_validation(error, data) from None
