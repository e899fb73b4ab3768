"""The adapter for Anthropic's Messages API: OpenAI chat requests in, chat completions out.

Translation, both ways:
- system and developer messages become the ``system`` prompt; tool results become user
  ``tool_result`` blocks; consecutive messages of one role are merged (Anthropic wants the roles
  to alternate); images become ``url`` or ``base64`` image blocks; ``stop`` becomes
  ``stop_sequences``; ``max_tokens`` is required there, so a default applies when none is given;
- ``text`` blocks become the message content, ``tool_use`` blocks ``tool_calls``, ``thinking``
  blocks ``reasoning_content``; stop reasons and usage are mapped; streamed events become
  ``chat.completion.chunk`` objects.
Parameters Anthropic has no counterpart for (``n`` > 1, logprobs, penalties, ``seed``, JSON
response formats, a temperature above 1 ...) are refused with a 400 naming them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from llm_api import json_codec
from llm_api.errors import InvalidRequest, UpstreamError
from llm_api.providers import sse_client
from llm_api.providers.messages import texts_of
from llm_api.providers.openai_compatible import _model_ids
from llm_api.providers.registry import Provider, Route
from llm_api.providers.upstream import UpstreamCalls

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Parameters Anthropic has no counterpart for, with the values that ask for nothing (accepted).
# OpenAI's storage and routing hints (metadata, prompt_cache_key, safety_identifier) change no answer
# and are simply not sent.
NO_COUNTERPART: dict[str, tuple[Any, ...]] = {
    "logprobs": (False,),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "seed": (),
    "repetition_penalty": (1,),
    "verbosity": (),
    "reasoning_effort": ("none",),
    "modalities": (["text"],),
}
_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,(.*)$", re.S)


class Anthropic:
    def __init__(self, calls: UpstreamCalls) -> None:
        self._calls = calls

    def check(self, provider: Provider, body: dict[str, Any]) -> None:
        for parameter, neutral in NO_COUNTERPART.items():
            value = body.get(parameter)
            if value is not None and not any(_same(value, asks_nothing) for asks_nothing in neutral):
                raise _unsupported(provider, parameter)
        if body.get("n", 1) != 1:
            raise _unsupported(provider, "n", "only one choice per request")
        if body.get("temperature", 0) > 1:
            raise InvalidRequest(
                f"Provider {provider.name} (anthropic) accepts a temperature up to 1.",
                param="temperature",
                code="unsupported_parameter",
            )
        if (body.get("response_format") or {}).get("type", "text") != "text":
            raise _unsupported(provider, "response_format", "no JSON response formats")
        messages_request(body, "check")  # refuses unsupported content (audio, files) before any call

    async def list_models(self, provider: Provider) -> list[str]:
        listing = await self._calls.json(provider, "GET", f"{provider.base_url.rstrip('/')}/models", headers=_headers(provider))
        return _model_ids(provider, listing)

    async def complete(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        request = messages_request(body, route.upstream_id)
        answer = await self._calls.json(
            route.provider, "POST", _url(route.provider), headers=_headers(route.provider), json_body=request
        )
        try:
            return completion(answer)
        except (KeyError, TypeError, AttributeError):  # not the Messages API's shape
            raise _unreadable(route.provider, "answered something that is not a message") from None

    async def stream(self, route: Route, body: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """The answer as chat.completion.chunk objects, a batch per read from the provider."""
        provider = route.provider
        request = {**messages_request(body, route.upstream_id), "stream": True}
        translator = _StreamTranslator()
        async with self._calls.open(
            provider, "POST", _url(provider), stream=True, headers=_headers(provider), json_body=request
        ) as response:
            async for events in sse_client.event_batches(provider, response):
                chunks: list[dict[str, Any]] = []
                for name, data in events:
                    try:
                        chunks += _translated(provider, translator, name, data)
                    except UpstreamError:
                        if chunks:  # what came before the bad event is relayed, as it would be a read earlier
                            yield chunks
                        raise
                    if translator.finished:
                        yield chunks
                        return
                if chunks:
                    yield chunks
        raise UpstreamError(
            f"Provider {provider.name} ended its answer before message_stop.", code="incomplete_upstream_response"
        )


def _translated(provider: Provider, translator: _StreamTranslator, name: str | None, data: bytes) -> list[dict[str, Any]]:
    try:
        event = json_codec.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse (not an internal error)
        raise _unreadable(provider, "sent an event that is not JSON") from None
    if not isinstance(event, dict):
        raise _unreadable(provider, "sent an event that is not an object")
    if (name or event.get("type")) == "error":
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        raise UpstreamError(f"Provider {provider.name} failed mid-answer: {error.get('type')}: {error.get('message')}")
    try:
        return translator.chunks(event)
    except (KeyError, TypeError, AttributeError):
        raise _unreadable(provider, f"sent a {event.get('type')} event of an unknown shape") from None


def messages_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat request."""
    system: list[dict] = []
    turns: list[dict] = []
    for message in body["messages"]:
        role = message["role"]
        if role in ("system", "developer"):
            system += [{"type": "text", "text": text} for text in texts_of(message.get("content")) if text]
            continue
        if role == "tool":
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": "\n".join(texts_of(message["content"])),
                }
            ]
            role = "user"
        elif role == "assistant":
            blocks = [{"type": "text", "text": text} for text in texts_of(message.get("content")) if text]
            blocks += [
                {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": call["function"]["name"],
                    "input": _arguments(call["function"]["arguments"]),
                }
                for call in message.get("tool_calls") or []
            ]
        else:
            blocks = _user_blocks(message["content"])
        if not blocks:  # an empty turn (Anthropic refuses empty content)
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    request: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        request["system"] = system
    for name in ("temperature", "top_p"):
        if name in body:
            request[name] = body[name]
    if body.get("top_k", -1) >= 0:  # -1 means "no top_k"; Anthropic knows no such value
        request["top_k"] = body["top_k"]
    if "stop" in body:
        request["stop_sequences"] = [body["stop"]] if isinstance(body["stop"], str) else list(body["stop"])
    if body.get("tools"):
        request["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                "input_schema": tool["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in body["tools"]
        ]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and body.get("tools"):
        request["tool_choice"] = choice
    if body.get("user"):
        request["metadata"] = {"user_id": body["user"]}
    return request


def completion(answer: dict[str, Any]) -> dict[str, Any]:
    """A chat completion from a Messages API answer (KeyError, TypeError or AttributeError when it is
    not one)."""
    if not all(isinstance(block, dict) for block in answer["content"]):
        raise TypeError("content blocks must be objects")
    texts = [_string(block["text"]) for block in answer["content"] if block.get("type") == "text"]
    thinking = [block.get("thinking", "") for block in answer["content"] if block.get("type") == "thinking"]
    calls = [
        {
            "id": block["id"],
            "type": "function",
            "function": {"name": block["name"], "arguments": json.dumps(block.get("input", {}))},
        }
        for block in answer["content"]
        if block.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return {
        "id": f"chatcmpl-{answer.get('id', '')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.get("model", ""),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _FINISH.get(answer.get("stop_reason"), "stop")}
        ],
        "usage": _usage(answer.get("usage") or {}),
    }


class _StreamTranslator:
    """Anthropic stream events in, chat.completion.chunk objects out."""

    def __init__(self) -> None:
        self.finished = False
        self._base: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._usage: dict[str, Any] = {}

    def chunks(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message", {})
            self._base = {
                "id": f"chatcmpl-{message.get('id', '')}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": message.get("model", ""),
            }
            self._usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block", {})
            if block.get("type") == "tool_use":
                index = self._tools[event["index"]] = len(self._tools)
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block["id"],
                                    "type": "function",
                                    "function": {"name": block["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta", {})
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
            if delta.get("type") == "input_json_delta" and event.get("index") in self._tools:
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {"index": self._tools[event["index"]], "function": {"arguments": delta.get("partial_json", "")}}
                            ]
                        }
                    )
                ]
            return []
        if kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason=_FINISH.get(reason, "stop"))] if reason else []
        if kind == "message_stop":
            self.finished = True
            return [{**self._base, "choices": [], "usage": _usage(self._usage)}]
        return []  # ping, content_block_stop

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {**self._base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def _same(value: Any, neutral: Any) -> bool:
    """Equal and of the same kind: ``0`` is a seed, not ``False``."""
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    return value == neutral


def _user_blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part["type"] == "text":
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif part["type"] == "image_url":
            blocks.append({"type": "image", "source": _image_source(part["image_url"]["url"])})
        else:
            raise InvalidRequest(
                f"Anthropic models take text and images, not {part['type']} parts.", param="messages", code="unsupported_content"
            )
    return blocks


def _image_source(url: str) -> dict[str, str]:
    match = _DATA_URL.match(url)
    if match:
        try:
            base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("An image data URL is not valid base64.", param="messages", code="invalid_image") from None
        return {"type": "base64", "media_type": match.group(1), "data": match.group(2)}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequest("Images must be http(s) URLs or base64 data URLs.", param="messages", code="invalid_image")


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments else {}
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse, a 400 like any bad JSON (not a 500)
        raise InvalidRequest("A tool call's arguments are not JSON.", param="messages", code="invalid_tool_arguments") from None


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        result: dict[str, Any] = {"type": "tool", "name": choice["function"]["name"]}
    else:
        result = {"type": {"required": "any", "none": "none"}.get(choice, "auto")}
    if parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = sum(int(usage.get(key) or 0) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    completion_tokens = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _unreadable(provider: Provider, what: str) -> UpstreamError:
    return UpstreamError(f"Provider {provider.name} {what}.", code="invalid_upstream_response")


def _unsupported(provider: Provider, parameter: str, detail: str = "") -> InvalidRequest:
    why = f" ({detail})" if detail else ""
    return InvalidRequest(
        f"{parameter} is not supported by provider {provider.name} (anthropic){why}.",
        param=parameter,
        code="unsupported_parameter",
    )


def _url(provider: Provider) -> str:
    return f"{provider.base_url.rstrip('/')}/messages"


def _headers(provider: Provider) -> dict[str, str]:
    return {"x-api-key": provider.api_key or "", "anthropic-version": API_VERSION}
