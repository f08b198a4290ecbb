"""Reading a request body: size-limited read, JSON parse, the card-data guard (before anything else looks at
the data), the refusal of text UTF-8 cannot carry (a lone surrogate, which JSON's `\ud800` escape can give), then
strict validation into a pydantic model with errors naming the field."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from payments_shared.carddata import contains_card_number
from payments_shared.errors import ApiError, echoed, invalid
from payments_shared.http.errors import api_error_from_validation
from payments_shared.json_paths import first_match
from payments_shared.unicode_text import find_unencodable_text
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def raw_card_data_error(param: str | None = None) -> ApiError:
    return invalid(
        "The request contains what looks like a card number. Send a payment-method token, never card data.",
        code="raw_card_data",
        param=param,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice is refused: which one counts would depend on the parser (a proxy that
    checked the first and this service using the last would disagree about the request)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


# Built once: `json.loads(raw, parse_constant=…)` would build a decoder per call. The decode below is what
# json.loads does with bytes (UTF-8/16/32 detected).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except _DuplicateKey as duplicate:
        if contains_card_number(duplicate.key):
            raise raw_card_data_error() from None
        key = echoed(duplicate.key)
        raise invalid(f"The key {key} appears twice in one object.", param=key, code="invalid_json") from None
    except RecursionError:  # the parser nests one Python call per level: a few hundred levels exhaust it
        raise invalid("The JSON in the request body is nested too deeply.", code="invalid_json") from None
    except ValueError:  # JSONDecodeError, bad UTF-8, absurdly long integers
        raise invalid("Malformed JSON in the request body.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    return data


def _is_card_number(value: object) -> bool:
    if isinstance(value, str):
        return contains_card_number(value)
    return isinstance(value, int) and not isinstance(value, bool) and contains_card_number(str(value))


def find_card_number(value: Any) -> tuple[str, ...] | None:
    """Where a card number sits in a parsed body: the path of the string (or integer) holding it, or of the object
    whose key holds it (never the key itself, which would echo the number); None when there is none."""
    found = first_match(value, _is_card_number)
    if found is None:
        return None
    path, in_key = found
    return path[:-1] if in_key else path


# Stripe's API takes form-encoded bodies: a client used to it is told what this one takes instead.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_FORM_BODY_MESSAGE = "The request body must be a JSON object (Content-Type: application/json), not form-encoded."


def _looks_like_a_form(request: Request, raw: bytes) -> bool:
    labelled = request.headers.get("content-type", "").lower().startswith(_FORM_TYPES)
    return labelled and not raw.lstrip().startswith(b"{")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, refused (413/400/400 raw_card_data/400 on text that is not Unicode) before it is
    used for anything. The body is read as JSON whatever its Content-Type (`curl -d` labels JSON as a form)."""
    raw = await request.body()
    try:
        data = parse_json_object(raw)
    except ApiError:
        if _looks_like_a_form(request, raw):
            raise invalid(_FORM_BODY_MESSAGE, code="invalid_json") from None
        raise
    found_at = find_card_number(data)
    if found_at is not None:
        raise raw_card_data_error(".".join(found_at) or None)
    found_at = find_unencodable_text(data)
    if found_at is not None:
        param = ".".join(echoed(part) for part in found_at)
        raise invalid(f"Invalid {param}: the text holds a lone surrogate, which is not valid Unicode.", param=param)
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise api_error_from_validation(error, data) from None
