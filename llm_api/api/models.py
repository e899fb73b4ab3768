"""Models the caller can use. Providers arrive with the chat issue; until one is configured the
list is empty, which is an answer, not an error (OpenAI clients list models on start-up)."""

from __future__ import annotations

from aiohttp import web

from llm_api.schemas import models
from llm_api.server.responses import json_response


async def list_models(request: web.Request) -> web.Response:
    return json_response(models.ModelList(object="list", data=[]))
