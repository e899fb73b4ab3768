"""A chat completion from request to stored exchange.

1. resolve ``model`` to its candidate routes (404 when nothing serves it), and drop those that cannot
   honour the request's parameters or images (400 when none can);
2. check the conversation belongs to the caller; assemble the prompt (project instruction, profile,
   recalled memory); resolve ``jan_`` media ids;
3. call the candidates with failover; a plain answer is normalised and returned, a streamed one relayed;
4. store the last input message and the answer in the conversation, when asked to, and tell the
   memory service about the exchange.

Nothing is stored for a call that failed before its answer began. Along the way the metrics count
tokens (the provider's usage), the time to a stream's first chunk, the streams being relayed, and
failed provider calls (see ``observability.metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opentelemetry import trace
from pydantic import ValidationError

from llm_api.chat.answers import normalized_completion
from llm_api.chat.exchange import answer_items, input_items, last_user_text, title_from
from llm_api.chat.failover import Failover
from llm_api.chat.media import MediaResolver, image_urls
from llm_api.chat.memory import MemoryService
from llm_api.chat.prompt import MEMORY, PromptContext, assemble
from llm_api.chat.relay import ChunkRelay, StreamEnd
from llm_api.chat.request import ChatRequest
from llm_api.config import Settings
from llm_api.conversations.projects import Projects
from llm_api.conversations.service import Conversations
from llm_api.errors import ApiError, ContractDrift, InternalError, InvalidRequest, NotFound
from llm_api.observability.metrics import Metrics
from llm_api.providers.capabilities import capabilities
from llm_api.providers.registry import Route
from llm_api.providers.service import Providers
from llm_api.schemas import models
from llm_api.user_settings import UserSettings

log = logging.getLogger(__name__)

_NO_PROVIDERS = (
    "No model provider is configured yet. Add one with POST /v1/admin/providers, in the file named by "
    "PROVIDERS_CONFIG_FILE, or with OPENAI_API_KEY, ANTHROPIC_API_KEY, VLLM_BASE_URL or OLLAMA_BASE_URL."
)


@dataclass
class PreparedChat:
    request: ChatRequest
    user_id: str
    body: dict[str, Any]  # what goes upstream: prompt assembled, media resolved
    routes: list[Route]
    conversation: dict | None
    observe: bool  # tell the memory service about the exchange
    headers: dict[str, str] = field(default_factory=dict)  # what the response carries besides the answer


class Chat:
    def __init__(
        self,
        providers: Providers,
        conversations: Conversations,
        projects: Projects,
        user_settings: UserSettings,
        settings: Settings,
        session: aiohttp.ClientSession,
        tracer: trace.Tracer,
        metrics: Metrics,
        *,
        check_chunks: bool,
    ) -> None:
        self._providers = providers
        self._conversations = conversations
        self._projects = projects
        self._user_settings = user_settings
        self._settings = settings
        self._memory = (
            MemoryService(session, settings.memory_base_url, settings.memory_timeout) if settings.memory_base_url else None
        )
        self._media = MediaResolver(session, settings.media_resolve_url, settings.media_resolve_timeout)
        self._tracer = tracer
        self._metrics = metrics
        self._failover = Failover(providers, settings.upstream_retries, metrics)
        self._check_chunks = check_chunks  # strict mode: every streamed chunk against the contract

    async def prepare(self, user_id: str, request: ChatRequest, *, credentials: Mapping[str, str]) -> PreparedChat:
        """``credentials``: the caller's own headers, forwarded to the media API."""
        routes = self._capable(self._routes(request.model), request.upstream_body)
        conversation, instruction = None, None
        if request.conversation_id is not None:
            conversation = await self._conversations.get(user_id, request.conversation_id)
            if conversation["project_id"] is not None:
                instruction = await self._projects.instruction(user_id, conversation["project_id"])
        user_settings = (await self._user_settings.get(user_id)).settings
        memory_config = user_settings["memory_config"]
        remembers = self._memory is not None and memory_config["enabled"] and MEMORY not in request.skipped_modules
        memory = await self._recall(user_id, request, conversation, memory_config) if remembers else ()
        messages, applied = assemble(
            request.upstream_body["messages"],
            PromptContext(instruction, user_settings["profile_settings"], memory),
            skipped=request.skipped_modules,
        )
        body = {**request.upstream_body, "messages": await self._media.resolved(messages, credentials)}
        headers = {"X-Applied-Prompt-Modules": ",".join(applied)} if applied else {}
        # Only what the caller keeps is remembered: a chat without a conversation, or with store false, is not.
        observe = self._memory is not None and memory_config["enabled"] and memory_config["observe_enabled"] and request.store
        return PreparedChat(request, user_id, body, routes, conversation, observe, headers)

    async def close(self) -> None:
        if self._memory is not None:
            await self._memory.close()

    async def _recall(
        self, user_id: str, request: ChatRequest, conversation: dict | None, config: Mapping[str, Any]
    ) -> tuple[str, ...]:
        query = last_user_text(request.upstream_body["messages"])
        if not query:
            return ()
        assert self._memory is not None
        return await self._memory.recall(
            config,
            user_id=user_id,
            query=query,
            conversation_id=conversation["id"] if conversation else None,
            project_id=conversation["project_id"] if conversation else None,
        )

    async def complete(self, chat: PreparedChat) -> dict[str, Any]:
        with self._span(chat) as span:
            route, answer = await self._failover.complete(chat.routes, chat.body)
            answer = normalized_completion(answer, route.public_id)
            _record_answer(
                span, route, answer.get("usage"), [choice.get("finish_reason") for choice in answer.get("choices") or []]
            )
            self._metrics.count_tokens(route.public_id, route.provider.name, answer.get("usage"))
        if chat.conversation is not None:
            choices = answer["choices"]
            message = choices[0]["message"] if choices else {"role": "assistant", "content": None}
            answer["conversation"] = await self._store(chat, message, complete=True)
            self._observe(chat, message)
        return answer

    async def stream(self, chat: PreparedChat) -> AsyncIterator[list[dict[str, Any]] | StreamEnd]:
        """The answer's chunks for the client, a batch per read from the provider, then one ``StreamEnd``.

        A failure before the first chunk is raised by the first step, so that it can still be an ordinary
        error response; a failure after it ends the stream (``StreamEnd.error``). A consumer that stops
        early, by closing the iterator or because its task was cancelled (the client left), makes the
        stream close the provider's connection and store what arrived, marked incomplete.
        """
        left: BaseException | None = None  # how the consumer stopped early, re-raised outside the span
        with self._span(chat) as span:
            started = time.monotonic()
            route, (first, rest) = await self._failover.open_stream(chat.routes, chat.body)
            waited = time.monotonic() - started
            span.set_attribute("llm_api.time_to_first_chunk_ms", round(waited * 1000))
            self._metrics.first_token(route.public_id, route.provider.name, waited)
            relay = ChunkRelay(first[0], route.public_id, include_usage=chat.request.include_usage)
            failure: ApiError | None = None
            with self._metrics.relaying_stream():
                try:
                    batch: list[dict[str, Any]] | None = first
                    while batch is not None:
                        outgoing = relay.take(batch)
                        if outgoing:
                            yield self._checked(outgoing)
                        batch = await anext(rest, None)
                except (asyncio.CancelledError, GeneratorExit) as stopped:
                    left = stopped
                except ApiError as error:
                    failure = error
                    self._metrics.upstream_failed(route.provider.name, error)
                    log.warning("stream from provider %s failed: %s", route.provider.name, error.message)
                except Exception:  # unforeseen: the client still gets an error frame and the end of the stream
                    log.exception("relaying the stream from provider %s failed", route.provider.name)
                    failure = InternalError("The answer could not be relayed; the provider sent something unexpected.")
                finally:
                    await rest.aclose()  # the provider's connection, before anything is stored
                if left is not None:
                    span.set_attribute("llm_api.client_disconnected", True)
                end = await self._finished(chat, route, relay, span, failure=failure, complete=failure is None and left is None)
        if left is not None:
            raise left
        yield end

    async def _finished(
        self, chat: PreparedChat, route: Route, relay: ChunkRelay, span: trace.Span, *, failure: ApiError | None, complete: bool
    ) -> StreamEnd:
        """A streamed answer recorded, stored (when asked to) and observed; how its stream ends."""
        gathered = relay.gathered
        _record_answer(span, route, gathered.usage, [gathered.finish_reason])
        self._metrics.count_tokens(route.public_id, route.provider.name, gathered.usage)  # when the provider sent it
        summary = None
        if chat.conversation is not None and (complete or gathered.started):
            try:
                summary = await self._store(chat, gathered.message(), complete=complete)
            except ApiError as error:
                # The stream has begun, so its status can no longer change: a store that fails (the
                # database unreachable) must arrive as the error event then [DONE], like any failure
                # after the first chunk. Raised, it left the client waiting on a stream never ended.
                failure = failure or error
                complete = False  # not stored: nothing to tell the memory service
        if complete:
            self._observe(chat, gathered.message())
        conversation_chunk = None
        if summary is not None and failure is None:
            try:
                conversation_chunk = self._checked([relay.conversation_chunk(summary)])[0]
            except ContractDrift as drift:
                failure = drift
        return StreamEnd(conversation_chunk, failure)

    async def _store(self, chat: PreparedChat, answer: dict[str, Any], *, complete: bool) -> dict[str, Any]:
        """Store the exchange (when asked to); the conversation's ``{id, title}`` either way."""
        conversation = chat.conversation
        assert conversation is not None
        if chat.request.store:
            rows = input_items(chat.request.upstream_body["messages"][-1])
            rows += answer_items(answer, complete=complete, store_reasoning=chat.request.store_reasoning)
            title = title_from(chat.request.upstream_body["messages"])
            # Shielded: a client leaving during the write must not leave half an exchange behind.
            stored = await asyncio.shield(self._conversations.record_exchange(chat.user_id, conversation["id"], rows, title))
            conversation = stored or conversation
        return {"id": conversation["id"], "title": conversation["title"]}

    def _observe(self, chat: PreparedChat, answer: dict[str, Any]) -> None:
        said, replied = last_user_text(chat.request.upstream_body["messages"]), answer.get("content")
        if chat.observe and said and isinstance(replied, str) and replied and self._memory is not None:
            conversation = chat.conversation or {}
            self._memory.observe(
                user_id=chat.user_id,
                project_id=conversation.get("project_id"),
                conversation_id=conversation["id"],
                exchange=[("user", said), ("assistant", replied)],
            )

    def _routes(self, model: str) -> list[Route]:
        registry = self._providers.registry
        routes = registry.resolve(model)
        if routes:
            return routes
        if not registry.providers:
            raise NotFound(_NO_PROVIDERS, param="model", code="model_not_found")
        if not registry.active:
            raise NotFound(
                "No model provider is active; an administrator can activate one with PATCH /v1/admin/providers/{id}.",
                param="model",
                code="model_not_found",
            )
        raise NotFound(
            f"The model '{model}' does not exist or no active provider serves it; GET /v1/models lists the models available.",
            param="model",
            code="model_not_found",
        )

    def _capable(self, routes: list[Route], body: dict[str, Any]) -> list[Route]:
        """The routes whose provider can honour every parameter (and take images, if any); the first
        refusal when none can."""
        capable, refusal = [], None
        has_images = bool(image_urls(body["messages"]))
        for route in routes:
            try:
                if has_images and not capabilities(route.provider)["vision"]:
                    raise InvalidRequest(
                        f"The model {route.public_id} does not take images (provider {route.provider.name} does not declare "
                        'vision; an administrator can set its metadata vision: "true").',
                        param="messages",
                        code="image_input_unsupported",
                    )
                self._providers.adapter(route.provider).check(route.provider, body)
            except InvalidRequest as error:
                refusal = refusal or error
                continue
            capable.append(route)
        if not capable:
            assert refusal is not None
            raise refusal
        return capable

    def _checked(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._check_chunks:  # strict mode: every streamed chunk against the contract
            for chunk in chunks:
                try:
                    models.ChatCompletionChunk.model_validate(chunk)
                except ValidationError as error:
                    raise ContractDrift(f"contract drift: a streamed chunk is not a ChatCompletionChunk: {error}") from None
        return chunks

    def _span(self, chat: PreparedChat):
        return self._tracer.start_as_current_span(
            "chat.completion",
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": chat.request.model,
                "llm_api.stream": chat.request.stream,
            },
        )


def _record_answer(span: trace.Span, route: Route, usage: dict[str, Any] | None, finish_reasons: list[str | None]) -> None:
    span.set_attribute("gen_ai.response.model", route.public_id)
    if any(finish_reasons):  # none for a stream that never finished
        span.set_attribute("gen_ai.response.finish_reasons", [reason or "" for reason in finish_reasons])
    span.set_attribute("gen_ai.system", route.provider.vendor)
    span.set_attribute("llm_api.provider", route.provider.name)
    if usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens") or 0))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens") or 0))
