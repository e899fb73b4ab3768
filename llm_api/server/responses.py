"""Building responses: JSON bodies from models, and the error envelope."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web
from pydantic import BaseModel

from llm_api.errors import ApiError


def json_response(payload: BaseModel | Mapping, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response; models are serialised by pydantic (absent optional fields are left out)."""
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json(by_alias=True).encode()
    else:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def error_response(error: ApiError) -> web.Response:
    """The OpenAI error envelope for an ApiError, with its status and headers."""
    return json_response(error.envelope(), status=error.status, headers=error.headers)
