"""OpenAPI documentation of request bodies that routes read themselves (so the card-data guard runs before any
parsing): the model's JSON schema as the route's requestBody, its nested models under components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF_TEMPLATE = "#/components/schemas/{model}"
_extra_schemas: dict[str, Any] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model`."""
    schema = model.model_json_schema(ref_template=_REF_TEMPLATE)
    _extra_schemas.update(schema.pop("$defs", {}))
    _extra_schemas[model.__name__] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF_TEMPLATE.format(model=model.__name__)}}},
        }
    }


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_extra_schemas)
            _drop_validation_errors(schema)
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
