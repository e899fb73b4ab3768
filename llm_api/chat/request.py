"""What a chat-completion request asks for, split into what goes to the provider and what is ours."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llm_api.schemas import models
from llm_api.schemas.values import given

# Jan's extensions to the OpenAI request: read here, never sent to a provider.
_JAN_EXTENSIONS = frozenset({"conversation", "store", "store_reasoning", "disable_prompt_modules"})


@dataclass(frozen=True)
class ChatRequest:
    model: str
    #: The client's own JSON, without Jan's extensions and without nulls (which mean "not set").
    upstream_body: dict[str, Any]
    stream: bool
    include_usage: bool
    conversation_id: str | None
    store: bool
    store_reasoning: bool
    skipped_modules: frozenset[str]


def chat_request(validated: models.CreateChatCompletionRequest, raw: bytes) -> ChatRequest:
    """``validated`` is the body as the contract accepted it; ``raw`` the same body as sent.

    The raw JSON is what is forwarded, so that free-form parts (tool parameter schemas, metadata)
    reach the provider exactly as the client wrote them.
    """
    body = {key: value for key, value in json.loads(raw).items() if value is not None and key not in _JAN_EXTENSIONS}
    for key, value in body.items():
        # JSON Schema's integers include 2.0, so the contract accepts `"n": 2.0`; providers that parse
        # integers strictly (Go's encoding/json, as Ollama does) refuse it. Send the integer it stands for.
        if isinstance(value, float) and type(checked := getattr(validated, key, None)) is int:
            body[key] = checked
    reference = given(validated.conversation)
    conversation_id = reference.id if isinstance(reference, models.ConversationReference) else reference
    options = given(validated.stream_options)
    store = given(validated.store)
    return ChatRequest(
        model=validated.model,
        upstream_body=body,
        stream=bool(validated.stream),
        include_usage=bool(options is not None and given(options.include_usage)),
        conversation_id=conversation_id,
        store=conversation_id is not None and store is not False,
        store_reasoning=bool(given(validated.store_reasoning)),
        skipped_modules=frozenset(given(validated.disable_prompt_modules) or ()),
    )
