"""Reading a request body: size-limited read, JSON parse, the card-data guard (before anything else looks at
the data), the refusal of text UTF-8 cannot carry (a lone surrogate, which JSON's `\ud800` escape can give), then
strict validation into a pydantic model with errors naming the field."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

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


def _repeated_keys(pairs: list[tuple[str, Any]]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for key, _ in pairs:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    return repeated


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice is refused: which one counts would depend on the parser (a proxy that
    checked the first and this service using the last would disagree about the request)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey(_repeated_keys(pairs)[0])
    return result


# When looking for where a refused part of a body is: the value of a key named twice, a number too long to read.
_DUPLICATE: Final = object()
_TOO_LONG: Final = object()


def _int_or_too_long(digits: str) -> Any:
    try:
        return int(digits)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits, 4,300)
        return _TOO_LONG


def _marked_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        result.update(dict.fromkeys(_repeated_keys(pairs), _DUPLICATE))
    return result


# Built once: `json.loads(raw, parse_constant=…)` would build a decoder per call. The decode below is what
# json.loads does with bytes (UTF-8/16/32 detected).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=unique_keys)
# Only once the body was refused: where the part refused is (`metadata.order`), for the error's param.
_LOCATING_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, object_pairs_hook=_marked_duplicates, parse_int=_int_or_too_long
)


def _decoded(raw: bytes, decoder: json.JSONDecoder) -> Any:
    return decoder.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def _duplicate_key_error(raw: bytes, key: str) -> ApiError:
    """The refusal of a key named twice, naming its path. Parsing again may fail past it (malformed, too deep):
    that error is raised instead."""
    found = first_match(_decoded(raw, _LOCATING_DECODER), lambda value: value is _DUPLICATE)
    path = found[0] if found else (key,)
    if contains_card_number(key):
        return raw_card_data_error(".".join(path[:-1]) or None)  # the object holding it, never the key
    param = ".".join(echoed(part) for part in path)
    return invalid(f"The key {echoed(key)} appears twice in one object.", param=param, code="invalid_json")


def _undecodable(raw: bytes) -> ApiError:
    """Malformed JSON, unless what could not be read is an integer of more than 4,300 digits: that names its field
    (it is valid JSON, and as wrong as any other number out of range)."""
    try:
        found = first_match(_decoded(raw, _LOCATING_DECODER), lambda value: value is _TOO_LONG)
    except (ValueError, RecursionError):
        found = None
    if found is None:
        return invalid("Malformed JSON in the request body.", code="invalid_json")
    param = ".".join(echoed(part) for part in found[0])
    return invalid(f"Invalid {param}: the number has too many digits.", param=param)


def _parsed(raw: bytes) -> Any:
    try:
        return _decoded(raw, _DECODER)
    except _DuplicateKey as duplicate:
        raise _duplicate_key_error(raw, duplicate.key) from None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = _parsed(raw)
    except RecursionError:  # the parser nests one Python call per level: a few hundred levels exhaust it
        raise invalid("The JSON in the request body is nested too deeply.", code="invalid_json") from None
    except ValueError:  # JSONDecodeError, bad UTF-8, integers too long to read
        raise _undecodable(raw) from None
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


def _refuse_encoded(request: Request) -> None:
    """A compressed body (`Content-Encoding: gzip`) is not read as if it were JSON text (that says "malformed")."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        message = "Content-Encoding is not supported: send the JSON body uncompressed."
        raise ApiError("invalid_request_error", message, code="unsupported_content_encoding", status=415)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, refused (413/400/400 raw_card_data/400 on text that is not Unicode) before it is
    used for anything. The body is read as JSON whatever its Content-Type (`curl -d` labels JSON as a form)."""
    _refuse_encoded(request)
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
