"""API.md's error JSON for every failure an HTTP process can produce, FastAPI's own shapes replaced.

`install_error_handlers(app)` maps: ApiError → its status and body; request validation (FastAPI's 422) → 400
naming the field; unknown route/method (404/405) → the same shape; anything unexpected → a generic 500 with the
exception logged (the log formatter scrubs card data and secrets), never a stack trace in the response.
Rendering an error cannot fail: a name a client sent is echoed cut short and with lone surrogates replaced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Route

from payments_shared.errors import ApiError, echoed, invalid
from payments_shared.unicode_text import encodable

logger = logging.getLogger(__name__)

INTERNAL_ERROR_BODY = {
    "error": {"type": "api_error", "code": "internal_error", "message": "An unexpected error occurred."}
}


class ErrorJSONResponse(JSONResponse):
    """Starlette's JSONResponse, but text UTF-8 cannot carry (a lone surrogate in something a client sent) is
    replaced instead of failing the response."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return encodable(text).encode("utf-8")


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return ErrorJSONResponse(error.body(), status_code=error.status, headers={**error.headers(), **(headers or {})})


def param_from_loc(loc: Sequence[int | str], data: Any, missing: bool = False) -> str | None:
    """The dotted path of the field an error is about, following the input so that pydantic's union-member tags
    (`str`, `OpaquePaymentMethod`, …) are left out: `("metadata", "order")` → `metadata.order`. With `missing`,
    the last part (absent from the input) is the missing field's name."""
    parts: list[str] = []
    current = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, dict):
            if part in current:
                parts.append(echoed(str(part)))
                current = current[part]
            elif last and missing:
                parts.append(echoed(str(part)))
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            parts.append(str(part))
            current = current[part]
        else:
            break
    return ".".join(parts) if parts else None  # a key may be "": its param is "", not none


def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = error.errors()
    first = errors[0] if errors else {"loc": (), "msg": "Invalid request"}
    loc = [part for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(str(part) for part in loc) or None
    return error_response(invalid(f"Invalid value for {param or 'the request'}: {first['msg']}", param=param))


def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 404:
        api_error = ApiError("not_found", "Unrecognized request URL.", code="resource_missing")
    elif error.status_code == 405:
        api_error = ApiError(
            "invalid_request_error", "Method not allowed for this URL.", code="method_not_allowed", status=405
        )
        return error_response(api_error, {"Allow": ", ".join(allowed_methods(request))})
    else:
        api_error = ApiError("invalid_request_error", str(error.detail), status=error.status_code)
    return error_response(api_error, dict(error.headers or {}))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (RFC 9110's Allow), with HEAD wherever GET is (head.HeadAsGet):
    Starlette names only the first route matching the path (`/customers/{id}` has GET, PUT and DELETE routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(INTERNAL_ERROR_BODY, status_code=500)


def _client_gone(request: Request) -> JSONResponse:
    """The client closed the connection (or its request ran out of time) before its body arrived: nothing was
    done, and the answer has no one to reach. Not a server fault, so not logged as one."""
    logger.info("the client went away before its request arrived whole: %s %s", request.method, request.url.path)
    return error_response(invalid("The request body did not arrive whole.", code="request_incomplete"))


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return _validation_error(request, error)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return _http_error(request, error)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        return _unexpected(request, error)

    async def on_client_gone(request: Request, error: Exception) -> JSONResponse:
        return _client_gone(request)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(Exception, on_unexpected)


def api_error_from_validation(error: ValidationError, data: Any) -> ApiError:
    """A pydantic error on a request body → 400 naming the field (never echoing the value)."""
    errors = error.errors(include_url=False, include_input=False)
    first = _most_telling(errors, data)
    param = param_from_loc(first["loc"], data, missing=first["type"] == "missing")
    if first["type"] == "extra_forbidden":
        return invalid(f"Received unknown parameter: {param or '(an empty name)'}", param=param)
    if first["type"] == "missing":
        return invalid(f"Missing required param: {param}", param=param)
    reason = str(first["msg"]).removeprefix("Value error, ")
    return invalid(f"Invalid {param or 'request'}: {reason}", param=param)


def _most_telling(errors: Sequence[ErrorDetails], data: Any) -> ErrorDetails:
    """For a union, pydantic reports each member's failure: the one that is not a type mismatch says more; among
    the first field's type mismatches, the one that follows the input deepest is the member of the input's own
    shape (`{"data_descriptor": 1}` is an Accept.js object whose `data_descriptor` is wrong, not a wrong token)."""
    telling = next((e for e in errors if not e["type"].endswith("_type")), None)
    if telling is not None:
        return telling
    same_field = [e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]]
    return max(same_field, key=lambda e: len((param_from_loc(e["loc"], data) or "").split(".")))
