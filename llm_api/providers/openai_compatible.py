"""The adapter for servers that speak OpenAI's chat-completions protocol: vLLM, OpenAI, Ollama,
LM Studio, Jan desktop, OpenRouter, Groq, Mistral, Together, DeepInfra, Fireworks, Gemini's
OpenAI endpoint... Requests and answers already have the right shape; the adapter points them at
the provider's own model id and checks what the vendor cannot honour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from llm_api import json_codec
from llm_api.errors import InvalidRequest, UpstreamError
from llm_api.providers import sse_client
from llm_api.providers.registry import Provider, Route
from llm_api.providers.upstream import UpstreamCalls

# Sampling extensions only some OpenAI-compatible servers implement; elsewhere they would be ignored
# silently, so they are refused instead.
SUPPORTED_BY = {
    "top_k": {"vllm", "ollama", "lmstudio", "jan", "openrouter", "together", "deepinfra", "fireworks", "openai_compatible"},
    "repetition_penalty": {"vllm", "lmstudio", "jan", "openrouter", "together", "deepinfra", "openai_compatible"},
}


class OpenAICompatible:
    def __init__(self, calls: UpstreamCalls) -> None:
        self._calls = calls

    def check(self, provider: Provider, body: dict[str, Any]) -> None:
        for parameter, vendors in SUPPORTED_BY.items():
            if parameter in body and provider.vendor not in vendors:
                raise InvalidRequest(
                    f"{parameter} is not supported by provider {provider.name} ({provider.vendor}).",
                    param=parameter,
                    code="unsupported_parameter",
                )

    async def list_models(self, provider: Provider) -> list[str]:
        listing = await self._calls.json(provider, "GET", f"{provider.base_url.rstrip('/')}/models", headers=_headers(provider))
        return _model_ids(provider, listing)

    async def complete(self, route: Route, body: dict[str, Any]) -> dict[str, Any]:
        request = {key: value for key, value in body.items() if key != "stream_options"}
        request.update(model=route.upstream_id, stream=False)
        answer = await self._calls.json(
            route.provider, "POST", _url(route.provider), headers=_headers(route.provider), json_body=request
        )
        if not _shaped(answer, "message"):
            raise UpstreamError(
                f"Provider {route.provider.name} answered something that is not a chat completion.",
                code="invalid_upstream_response",
            )
        return answer

    async def stream(self, route: Route, body: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """The answer's chunks, a batch per read from the provider."""
        # Usage is always asked for: it is recorded even when the client did not ask to see it.
        request = {**body, "model": route.upstream_id, "stream": True, "stream_options": {"include_usage": True}}
        provider = route.provider
        async with self._calls.open(
            provider, "POST", _url(provider), stream=True, headers=_headers(provider), json_body=request
        ) as response:
            async for events in sse_client.event_batches(provider, response):
                chunks = []
                for _, data in events:
                    if data[:1] != b"{" and data.strip() == b"[DONE]":
                        if chunks:
                            yield chunks
                        return
                    try:
                        chunks.append(_chunk(provider, data))
                    except UpstreamError:
                        if chunks:  # what came before the bad event is relayed, as it would be a read earlier
                            yield chunks
                        raise
                yield chunks
        raise UpstreamError(f"Provider {provider.name} ended its answer without [DONE].", code="incomplete_upstream_response")


def _chunk(provider: Provider, data: bytes) -> dict[str, Any]:
    try:
        chunk = json_codec.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse (not an internal error)
        raise UpstreamError(
            f"Provider {provider.name} sent an event that is not JSON.", code="invalid_upstream_response"
        ) from None
    if isinstance(chunk, dict) and ("error" in chunk or chunk.get("object") == "error"):
        raise UpstreamError(f"Provider {provider.name} failed mid-answer: {_error_text(chunk)}")
    if not _shaped(chunk, "delta"):
        raise UpstreamError(
            f"Provider {provider.name} sent an event that is not a chat completion chunk.", code="invalid_upstream_response"
        )
    return chunk


def _shaped(answer: Any, part: str) -> bool:
    """Whether an answer (``part="message"``) or a chunk (``"delta"``) has the structure relied on:
    an object whose ``choices`` are objects, each with an object (or nothing) as its message or delta."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list):
        return False
    for choice in choices:  # a loop, not all(...): this runs for every streamed chunk
        if not isinstance(choice, dict):
            return False
        inner = choice.get(part)
        if inner and not isinstance(inner, dict):
            return False
    return True


def _url(provider: Provider) -> str:
    return f"{provider.base_url.rstrip('/')}/chat/completions"


def _headers(provider: Provider) -> dict[str, str]:
    return {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}


def _model_ids(provider: Provider, listing: Any) -> list[str]:
    entries = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(entries, list):
        raise UpstreamError(f"Provider {provider.name} answered its model list without data.", code="invalid_upstream_response")
    return [entry["id"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]]


def _error_text(chunk: Any) -> str:
    if isinstance(chunk, dict):
        error = chunk.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(chunk.get("message") or error or chunk)
    return str(chunk)
