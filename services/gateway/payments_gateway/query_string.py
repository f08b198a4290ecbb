"""Query strings. Only the list routes take query parameters. Elsewhere a query string is refused (400 naming the
parameter), not ignored: `POST /charge?amount=5` with `"amount": 100` in the body must not quietly charge 100.
On every route, a parameter whose name or value holds a card number is refused as card data, and never named or
echoed."""

from __future__ import annotations

from fastapi import Request
from payments_shared.carddata import contains_card_number
from payments_shared.errors import echoed, invalid

from payments_gateway.body import raw_card_data_error


def query_parameters(request: Request) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, in order, once none holds card data."""
    parameters = request.query_params.multi_items()
    if any(contains_card_number(name) or contains_card_number(value) for name, value in parameters):
        raise raw_card_data_error()
    return parameters


def refuse_query_parameters(request: Request) -> None:
    parameters = query_parameters(request)
    if not parameters:
        return
    name = echoed(parameters[0][0])
    raise invalid(
        f"Received unknown parameter: {name} (this route takes no query parameters; send them in the JSON body)",
        param=name,
    )
