"""Query strings. Only the list routes take query parameters. Elsewhere a query string is refused (400 naming the
parameter), not ignored: `POST /charge?amount=5` with `"amount": 100` in the body must not quietly charge 100.
On every route, a parameter whose name or value holds a card number is refused as card data and never echoed (a
value's parameter is named, as a body's field is; a name holding one is not); one whose percent-escapes are not
UTF-8 is refused naming it (Starlette would quietly read them as U+FFFD)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request
from payments_shared.carddata import contains_card_number
from payments_shared.errors import echoed, invalid
from payments_shared.unicode_text import is_encodable

from payments_gateway.body import raw_card_data_error


def query_parameters(request: Request) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, in order, once neither card data nor bytes that are not UTF-8."""
    parameters = request.query_params.multi_items()
    for name, value in parameters:
        if contains_card_number(name):
            raise raw_card_data_error()
        if contains_card_number(value):
            raise raw_card_data_error(echoed(name))
    _refuse_undecodable(request.scope.get("query_string", b""))
    return parameters


def _refuse_undecodable(raw: bytes) -> None:
    if b"%" not in raw:
        return
    # surrogateescape keeps bytes that are not UTF-8 visible (as lone surrogates) where Starlette has U+FFFD
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, errors="surrogateescape"):
        if not (is_encodable(name) and is_encodable(value)):
            param = echoed(name)
            raise invalid(f"The query parameter {param} is not percent-encoded UTF-8.", param=param)


def refuse_query_parameters(request: Request) -> None:
    parameters = query_parameters(request)
    if not parameters:
        return
    name = echoed(parameters[0][0])
    raise invalid(
        f"Received unknown parameter: {name} (this route takes no query parameters; send them in the JSON body)",
        param=name,
    )
