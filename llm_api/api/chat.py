"""POST /v1/chat/completions: plain or streamed, optionally stored in a conversation."""

from __future__ import annotations

from aiohttp import web

from llm_api.app_keys import CHAT, PRINCIPAL, SETTINGS
from llm_api.chat.request import chat_request
from llm_api.observability.logging import bind_log_fields
from llm_api.schemas import models
from llm_api.server.responses import json_response
from llm_api.server.sse import stream_response
from llm_api.server.validation import body_of


async def create_chat_completion(request: web.Request) -> web.StreamResponse:
    validated = body_of(request, models.CreateChatCompletionRequest)
    chat = request.app[CHAT]
    principal = request[PRINCIPAL]
    asked = chat_request(validated, await request.read())
    bind_log_fields(model=asked.model, conversation_id=asked.conversation_id)
    prepared = await chat.prepare(principal.user_id, asked, credentials=_credentials(request, principal.user_id))
    if prepared.request.stream:
        return await stream_response(
            request, chat.stream(prepared), headers=prepared.headers, keepalive=request.app[SETTINGS].sse_keepalive_interval
        )
    return json_response(await chat.complete(prepared), headers=prepared.headers)


def _credentials(request: web.Request, user_id: str) -> dict[str, str]:
    """What the media API needs to act as the caller: the caller's own credential, and who they are."""
    forwarded = {name: request.headers[name] for name in ("Authorization", "X-API-Key") if name in request.headers}
    return {**forwarded, "X-Principal-Id": user_id}
