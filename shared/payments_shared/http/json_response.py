"""The JSON response the gateway answers worker replies with."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from payments_shared import jsoncodec


class FastJSONResponse(JSONResponse):
    """Starlette's JSONResponse rendered by payments_shared.jsoncodec: the same compact UTF-8 bytes for the JSON
    types replies hold, in a fraction of the time."""

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps_bytes(content)
