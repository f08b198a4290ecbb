"""The OpenAPI document: request bodies that routes read themselves (so the card-data guard runs before any
parsing: the model's JSON schema as the route's requestBody, its nested models under components), and what
FastAPI cannot see from the routes: API.md's errors with their statuses, the `Idempotency-Key` header, each
route's permission."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from payments_gateway.response_docs import SUCCESS_SHAPES

_REF_TEMPLATE = "#/components/schemas/{model}"
_extra_schemas: dict[str, Any] = {}


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model` (`required`: unless the route reads an absent body as
    `{}`). Its fields named in `NOT_NULL` may be left out but not sent as null (a PUT's; null clears the others)."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    for name in getattr(model, "NOT_NULL", ()):
        _not_nullable(schema["properties"][name])
    _extra_schemas.update(schema.pop("$defs", {}))
    _extra_schemas[model.__name__] = schema
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=model.__name__)}}},
        }
    }


def _not_nullable(prop: dict[str, Any]) -> None:
    alternatives = [option for option in prop.pop("anyOf", []) if option != {"type": "null"}]
    if len(alternatives) == 1:
        prop.update(alternatives[0])
    elif alternatives:
        prop["anyOf"] = alternatives
    if prop.get("default", ...) is None:
        del prop["default"]


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_extra_schemas)
            _drop_validation_errors(schema)
            document_success_shapes(schema)
            document_api_errors(schema, _permissions(app))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 `HTTPValidationError` on every route with a path parameter. This API never answers
    that shape (a bad request is 400 in API.md's error shape; its 422 is an `idempotency_error`)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)


API_PREFIX = "/api/v1/payments/"
WEBHOOK_PREFIX = "/api/v1/webhooks/"
WRITES = ("post", "put", "delete")
PAYMENTS = ("/charge", "/authorize")  # the routes that answer 202 past RPC_TIMEOUT_S, and 402 for a decline
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                name: {"type": "string"}
                for name in ("type", "code", "message", "param", "transaction_id", "decline_code")
            },
        }
    },
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Performs the operation at most once per workspace and key (kept at least 24 hours); a repeat "
    "gets the first answer with `Idempotent-Replayed: true`, the same key with another body 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}
ERRORS = {  # API.md's table: status → when
    400: "Invalid request: malformed JSON, a missing, unknown or invalid field (`param` names it), card data.",
    401: "Missing, invalid or expired bearer token.",
    402: "The provider declined the card (`card_error`, with `decline_code` and `transaction_id`).",
    403: "The token lacks this route's permission.",
    404: "No such object, or another workspace's.",
    409: "The object's state does not allow it, or a request with this Idempotency-Key is still running.",
    413: "The body is over 1 MiB.",
    422: "The Idempotency-Key was used with a different request.",
    429: "Over the rate limit (see Retry-After).",
    502: "The provider answered with an error that is not a decline.",
    503: "The provider or the service is unavailable (see Retry-After).",
}


def document_success_shapes(schema: dict[str, Any]) -> None:
    """Each route's success answer: its shape (response_docs), where FastAPI saw only a JSONResponse."""
    components = schema["components"]["schemas"]
    for (method, path), model in SUCCESS_SHAPES.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        shape = model.model_json_schema(ref_template=_REF_TEMPLATE)
        components.update(shape.pop("$defs", {}))
        components[model.__name__] = shape
        for status, response in operation.get("responses", {}).items():
            if status.startswith("2"):
                response["content"] = {
                    "application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=model.__name__)}}
                }


def _permissions(app: FastAPI) -> dict[tuple[str, str], str]:
    """(path, method) → the permission its one dependency (`Authorized`) asks for."""
    found: dict[tuple[str, str], str] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            for dependency in route.dependant.dependencies:
                permission = getattr(dependency.call, "permission", None)
                if isinstance(permission, str):
                    found.update({(route.path_format, method.lower()): permission for method in route.methods or ()})
    return found


def document_api_errors(schema: dict[str, Any], permissions: dict[tuple[str, str], str]) -> None:
    """API.md's error answers on each operation, in its error shape; `Idempotency-Key` on every write; each
    route's permission in its description (and `x-permission`)."""
    schema["components"]["schemas"]["Error"] = ERROR_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = _error_statuses(path, method)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(str(status), _error_response(status))
            if path.startswith(API_PREFIX) and method in WRITES:
                operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
            if path.startswith(API_PREFIX) and path.endswith(PAYMENTS):
                pending = "Not answered by the worker within RPC_TIMEOUT_S: the transaction, `pending`, carried out."
                responses.setdefault("202", {**responses["201"], "description": pending})
            permission = permissions.get((path, method))
            if permission:
                operation["x-permission"] = permission
                operation["description"] = f"Permission: `{permission}`.\n\n" + operation.get("description", "")


def _error_statuses(path: str, method: str) -> list[int]:
    if path.startswith(WEBHOOK_PREFIX):
        return [400, 413, 429, 503]
    if not path.startswith(API_PREFIX):
        return []
    statuses = [400, 401, 403, 429, 503]
    if not (method == "get" and "{" not in path):  # every route but the lists names an object
        statuses.append(404)
    if method in WRITES:
        statuses += [409, 413, 422, 502]
    if path.endswith(PAYMENTS):
        statuses.append(402)
    return sorted(statuses)


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model="Error")}}},
    }
    if status in (429, 503):
        response["headers"] = RETRY_AFTER
    return response
