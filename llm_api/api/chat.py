"""POST /v1/chat/completions: plain or streamed, optionally stored in a conversation."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import CHAT, PRINCIPAL
from llm_api.chat.request import chat_request
from llm_api.schemas import models
from llm_api.server.responses import json_response
from llm_api.server.validation import body_of


async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    validated = body_of(request, models.CreateChatCompletionRequest)
    chat = request.app[CHAT]
    prepared = await chat.prepare(request[PRINCIPAL].user_id, chat_request(validated, await request.read()))
    if prepared.request.stream:
        return await chat.stream(request, prepared)
    return json_response(await chat.complete(prepared), headers=prepared.headers)
