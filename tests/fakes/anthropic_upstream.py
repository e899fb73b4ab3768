"""A wire-level fake of Anthropic's Messages API (``anthropic-version: 2023-06-01``) for tests.

It stands in for ``https://api.anthropic.com``: real HTTP on loopback, request validation with
Anthropic's error bodies, the non-streaming ``Message`` object and the named server-sent events of a
streamed one, byte for byte in the shapes the real API sends. Nothing in the code under test is patched::

    fake = FakeAnthropic()                      # key "sk-ant-test", models claude-sonnet-4-5, claude-haiku-4-5
    base_url = await fake.start()               # http://127.0.0.1:<port>; endpoints under /v1
    fake.reply("Il fait beau.", tool_use=[{"name": "get_weather", "input": {"city": "Paris"}}])
    fake.overloaded()                           # the call after that gets a 529
    ...                                         # calls beyond the queue get reply() defaults: "Bonjour !"
    assert fake.requests[-1]["json"]["max_tokens"] == 1024
    await fake.stop()

What is served:

* ``GET /v1/models`` (``limit``, ``after_id``, ``before_id``) and ``GET /v1/models/{model_id}``.
* ``POST /v1/messages``, non-streaming or with ``"stream": true``.

Every request needs the API key in ``x-api-key`` (or, as newer official SDKs send it, in
``Authorization: Bearer``; 401 ``authentication_error`` otherwise: "x-api-key header is required" /
"invalid x-api-key") and then an ``anthropic-version`` header, any value (400 "anthropic-version:
header is required"). Every response carries a ``request-id`` header (``req_011C…``); error bodies are
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`` as Anthropic sends
them today (``request_id`` repeats the header).

Scripting ``/v1/messages``: each of ``reply``, ``fail``, ``overloaded``, ``rate_limited``,
``stream_error``, ``delay``, ``cut`` and ``garbage`` queues the behaviour of one call, first in first
out (``pending`` counts what is left); a call finding the queue empty gets the default reply. Only
calls that pass authentication and validation take an entry: an invalid request gets its 400/404 and
leaves the queue alone (so does ``/v1/models``).

Validation, in the order Anthropic reports (first problem only, with its pydantic-style path):
required ``model``/``max_tokens``/``messages`` ("max_tokens: Field required"), unknown top-level
fields ("foo: Extra inputs are not permitted"), field types and ranges (``temperature``/``top_p`` in
0..1, ``top_k`` >= 0, ``stop_sequences`` a list of strings, ``metadata`` only ``user_id``, ``system`` a
string or a list of text blocks), ``messages`` (roles ``user``/``assistant`` only — ``system`` gets
Anthropic's "Unexpected role" message —, first one ``user``, roles alternating, non-empty content,
content blocks ``text``/``image``/``document``/``tool_use``/``tool_result``/``thinking``/
``redacted_thinking`` with their fields, an image's bytes matching its ``media_type``, every
``tool_use`` answered by a ``tool_result`` in the next message and every ``tool_result`` answering a
``tool_use`` of the previous one, no trailing whitespace at the end of a final assistant prefill),
``tools`` (``name`` matching ``^[a-zA-Z0-9_-]{1,128}$``, unique, ``input_schema`` of type object),
``tool_choice`` (``auto``/``any``/``tool`` with ``name``/``none``), ``thinking``
(``enabled`` with ``budget_tokens`` >= 1024 and < ``max_tokens``, temperature 1 only). Then the
model: unknown → 404 ``not_found_error`` "model: <id>"; ``max_tokens`` above the model's output
limit (64000 for the 4.5 models) → 400;
``temperature`` together with ``top_p`` → 400, as the Claude 4.5 models answer (not applied to
``claude-3*`` ids).

Choices where the fake is simpler than the real thing:

* The reply is what the test queued, not generated. Tokens are whitespace-led words
  (``"Bonjour !"`` is ``"Bonjour"`` + ``" !"``): the stream sends one ``text_delta`` per word,
  ``max_tokens`` truncates after that many words (``stop_reason`` ``"max_tokens"``, ``output_tokens``
  = ``max_tokens``), and the earliest ``stop_sequences`` entry found in the text ends it there
  (``"stop_sequence"``, the sequence itself not included). Either truncation drops queued
  ``tool_use`` blocks, as generation stopped before them.
* Otherwise ``usage`` is what ``reply(usage=(input, output))`` says, with zero cache tokens and
  ``service_tier: "standard"``. The response ``model`` is the requested id (the real API may answer
  with a dated snapshot id).
* A ``thinking`` block (with a random base64 ``signature``) appears only when the reply has
  ``thinking=`` and the request enables thinking.
* Consecutive same-role messages are rejected (the API's historical rule, which catches an adapter
  that forgets to merge turns); the current real API merges them into one turn instead.
* Error wordings are Anthropic's where known; for the rarer checks (block role placement, invalid
  JSON body) they are the fake's own, in the same style.

Streaming (``text/event-stream; charset=utf-8``), each event ``event: <name>\\ndata: <json>\\n\\n`` with
compact JSON (the ping's data is ``{"type": "ping"}``, spaced, as on the real wire): ``message_start``
(content ``[]``, ``stop_reason`` null, ``output_tokens`` 1), then per content block
``content_block_start`` / ``content_block_delta``… / ``content_block_stop`` with a ``ping`` right after
the first ``content_block_start``; thinking blocks stream ``thinking_delta``s then one
``signature_delta``, tool_use blocks start with ``"input": {}`` and stream ``input_json_delta``
fragments (the first one empty); then ``message_delta`` (``stop_reason``, ``stop_sequence``,
``usage.output_tokens``) and ``message_stop``. A mid-stream error is ``event: error`` with
``{"type":"error","error":{...}}``, after which the stream ends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import listen

API_VERSION = "2023-06-01"
MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's request size limit for the Messages API

# HTTP status of each Anthropic error type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
RATE_LIMIT_MESSAGE = (
    "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.claude.com/en/api/rate-limits); see the response headers for current usage. Please reduce "
    "the prompt length or the maximum tokens requested, or try again later. You may also contact sales at "
    "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."
)

# id -> (display name, created_at, maximum output tokens) for the models the fake knows by name.
KNOWN_MODELS = {
    "claude-sonnet-4-5": ("Claude Sonnet 4.5", "2025-09-29T00:00:00Z", 64000),
    "claude-haiku-4-5": ("Claude Haiku 4.5", "2025-10-15T00:00:00Z", 64000),
    "claude-opus-4-1": ("Claude Opus 4.1", "2025-08-05T00:00:00Z", 32000),
    "claude-sonnet-4-0": ("Claude Sonnet 4", "2025-05-22T00:00:00Z", 64000),
    "claude-3-5-haiku-latest": ("Claude Haiku 3.5", "2024-10-22T00:00:00Z", 8192),
}
DEFAULT_CREATED_AT = "2025-01-01T00:00:00Z"
DEFAULT_MAX_OUTPUT = 64000

TOP_LEVEL_FIELDS = (
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "cache_control",
    "container",
    "inference_geo",
    "output_config",
)
BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")
BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
ASSISTANT_ONLY = {"tool_use", "thinking", "redacted_thinking"}
USER_ONLY = {"tool_result", "image", "document"}
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_CHOICE_FIELDS = {
    "auto": {"type", "disable_parallel_tool_use"},
    "any": {"type", "disable_parallel_tool_use"},
    "tool": {"type", "name", "disable_parallel_tool_use"},
    "none": {"type"},
}
SERVER_TOOL_TYPE = re.compile(r"^[a-z_]+_\d{8}$")  # e.g. web_search_20250305
THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
# Per-request state the middleware hands to the handlers.
REQUEST_ID = web.RequestKey("request_id", str)
BODY = web.RequestKey("body", object)  # the parsed JSON body, or None
RAW_BODY = web.RequestKey("raw_body", bytes)
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_B58) for _ in range(length))


def new_message_id() -> str:
    return _random_id("msg_01", 22)


def new_tool_use_id() -> str:
    return _random_id("toolu_01", 22)


def new_request_id() -> str:
    return _random_id("req_011C", 20)


def _tokens(text: str) -> list[str]:
    """The fake's tokens: whitespace-led words (and trailing whitespace); they join back to ``text``."""
    return re.findall(r"\s*\S+|\s+$", text)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _display_name(model_id: str) -> str:
    """``claude-3-5-haiku-20241022`` -> ``Claude 3.5 Haiku``; ``claude-sonnet-4-5`` -> ``Claude Sonnet 4.5``."""
    parts = [p for p in model_id.split("-") if not (p.isdigit() and len(p) == 8) and p not in ("latest",)]
    words: list[str] = []
    for part in parts:
        if part.isdigit() and words and words[-1][-1].isdigit():
            words[-1] += "." + part
        else:
            words.append(part if part.isdigit() else part.capitalize())
    return " ".join(words)


class AnthropicError(Exception):
    """An error response: raised inside a handler, rendered by the middleware."""

    def __init__(self, status: int, error_type: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def _error_body(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


@dataclass
class _Plan:
    """How one ``/v1/messages`` call is answered."""

    kind: str = "reply"  # "reply", "fail" or "garbage"
    text: str = "Bonjour !"
    stop_reason: str | None = None  # None: "tool_use" when tool_use is given, else "end_turn"
    usage: tuple[int, int] = (21, 4)
    tool_use: list[dict[str, Any]] = field(default_factory=list)
    thinking: str | None = None
    status: int = 200  # for "fail"
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    mid_stream_after: int | None = None  # "fail" on a streaming call: an error event after this many events
    delay: float = 0.0  # before the status line
    event_delay: float = 0.0  # between streamed events
    cut_after: int | None = None  # abort the connection after this many events
    payload: bytes = b""  # for "garbage"


class FakeAnthropic:
    """Anthropic's Messages API served over HTTP on loopback, answering with queued behaviours."""

    def __init__(
        self, *, api_key: str = "sk-ant-test", models: Iterable[str] = ("claude-sonnet-4-5", "claude-haiku-4-5")
    ) -> None:
        self.api_key = api_key
        self.models = tuple(models)
        self.base_url = ""
        # {"method", "path", "headers" (names lower-cased), "json" (parsed body or None)} of every request.
        self.requests: list[dict[str, Any]] = []
        # Set when a client goes away before its answer is complete (mid-stream, or during a delay).
        self.disconnected = asyncio.Event()
        self._queue: collections.deque[_Plan] = collections.deque()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on a loopback port (a free one by default); return the base URL (the API lives under ``/v1``)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_get("/v1/models/{model_id}", self._get_model)
        app.router.add_post("/v1/messages", self._messages)
        self._runner, self.base_url = await listen(app, port, shutdown_timeout=1.0)
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting ---------------------------------------------------------------------------------

    def reply(
        self,
        text: str = "Bonjour !",
        *,
        stop_reason: str | None = None,
        usage: tuple[int, int] = (21, 4),
        tool_use: Sequence[Mapping[str, Any]] | None = None,
        thinking: str | None = None,
        delay: float = 0.0,
        event_delay: float = 0.0,
        cut_after: int | None = None,
    ) -> None:
        """Queue a successful answer. ``tool_use``: ``[{"id"?, "name", "input"}]`` (ids default to fresh
        ``toolu_01…``), after the text; ``stop_reason`` then defaults to ``"tool_use"``. ``thinking``: the
        text of a thinking block, sent when the request enables thinking. ``delay`` holds the status
        line back, ``event_delay`` paces streamed events, ``cut_after`` aborts the connection after that
        many events (see ``cut``)."""
        tools = [
            {"id": t.get("id") or new_tool_use_id(), "name": t["name"], "input": dict(t.get("input") or {})}
            for t in tool_use or ()
        ]
        self._queue.append(
            _Plan(
                text=text,
                stop_reason=stop_reason,
                usage=(int(usage[0]), int(usage[1])),
                tool_use=tools,
                thinking=thinking,
                delay=delay,
                event_delay=event_delay,
                cut_after=cut_after,
            )
        )

    def fail(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        mid_stream: bool = False,
        after_events: int = 4,
        delay: float = 0.0,
    ) -> None:
        """Queue an error answer with Anthropic's error body. A 429 gets ``retry-after: 1`` and
        ``anthropic-ratelimit-*`` headers unless ``headers`` say otherwise. With ``mid_stream``, a
        streaming call gets a 200 and the default text stream, interrupted after ``after_events`` events
        by an ``event: error`` (a non-streaming call still gets the HTTP error)."""
        extra: dict[str, str] = {}
        if status == 429:
            extra = {
                "retry-after": "1",
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:01Z",
            }
        extra.update({k.lower(): v for k, v in (headers or {}).items()})
        self._queue.append(
            _Plan(
                kind="fail",
                status=status,
                error_type=error_type,
                message=message,
                headers=extra,
                mid_stream_after=after_events if mid_stream else None,
                delay=delay,
            )
        )

    def overloaded(self) -> None:
        """Queue a 529 ``overloaded_error`` "Overloaded", as Anthropic sends under load."""
        self.fail(529, "overloaded_error", "Overloaded")

    def rate_limited(self, retry_after: int = 1) -> None:
        """Queue a 429 ``rate_limit_error`` with Anthropic's message and ``retry-after``."""
        self.fail(429, "rate_limit_error", RATE_LIMIT_MESSAGE, headers={"retry-after": str(retry_after)})

    def stream_error(self, after_events: int = 4, error_type: str = "overloaded_error", message: str = "Overloaded") -> None:
        """Queue a stream that breaks off with ``event: error`` after ``after_events`` events (a
        non-streaming call gets the matching HTTP error, e.g. 529 for ``overloaded_error``)."""
        self.fail(ERROR_STATUS.get(error_type, 500), error_type, message, mid_stream=True, after_events=after_events)

    def delay(self, seconds: float) -> None:
        """Queue the default reply, sent only after ``seconds`` (nothing at all arrives before)."""
        self.reply(delay=seconds)

    def cut(self, after_events: int) -> None:
        """Queue the default reply with the connection aborted part-way: a stream after ``after_events``
        events (no terminating chunk); a non-streaming answer after its headers and half its body, or
        before anything at all when ``after_events`` is 0."""
        self.reply(cut_after=after_events)

    def garbage(self, payload: bytes = b"{oops") -> None:
        """Queue a 200 whose body is not what the protocol promises: ``payload`` as an
        ``application/json`` body, or for a streaming call as the data of a ``message_start`` event."""
        self._queue.append(_Plan(kind="garbage", payload=payload))

    @property
    def pending(self) -> int:
        """How many queued behaviours are still waiting for a call."""
        return len(self._queue)

    # -- plumbing ----------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request_id = new_request_id()
        request[REQUEST_ID] = request_id
        too_large = False
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raw, too_large = b"", True
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        request[BODY] = parsed
        request[RAW_BODY] = raw
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "json": parsed,
            }
        )
        try:
            if too_large:
                raise AnthropicError(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
            response = await handler(request)
        except AnthropicError as exc:
            response = self._error_response(exc, request_id)
        except web.HTTPNotFound:
            response = self._error_response(AnthropicError(404, "not_found_error", "Not Found"), request_id)
        except web.HTTPMethodNotAllowed:
            response = self._error_response(AnthropicError(405, "invalid_request_error", "Method Not Allowed"), request_id)
        if not response.prepared:
            response.headers.setdefault("request-id", request_id)
        return response

    @staticmethod
    def _error_response(exc: AnthropicError, request_id: str) -> web.Response:
        headers = {"request-id": request_id, **exc.headers}
        return web.Response(
            status=exc.status,
            text=_dumps(_error_body(exc.error_type, exc.message, request_id)),
            content_type="application/json",
            headers=headers,
        )

    def _authenticate(self, request: web.Request) -> None:
        key = request.headers.get("x-api-key")
        if key is None:
            # Newer official SDKs send the API key as a bearer token, which the API accepts too.
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise AnthropicError(401, "authentication_error", "x-api-key header is required")
        if not secrets.compare_digest(key.encode(), self.api_key.encode()):
            raise AnthropicError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")

    def _model_object(self, model_id: str) -> dict[str, Any]:
        name, created, _ = KNOWN_MODELS.get(model_id, (_display_name(model_id), DEFAULT_CREATED_AT, 0))
        return {"type": "model", "id": model_id, "display_name": name, "created_at": created}

    @staticmethod
    def _max_output(model_id: str) -> int:
        if model_id in KNOWN_MODELS:
            return KNOWN_MODELS[model_id][2]
        return 8192 if model_id.startswith("claude-3") else DEFAULT_MAX_OUTPUT

    # -- /v1/models --------------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        q = request.query
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise _invalid("limit: Input should be a valid integer, unable to parse string as an integer") from None
        if not 1 <= limit <= 1000:
            raise _invalid("limit: Input should be greater than or equal to 1 and less than or equal to 1000")
        ids = list(self.models)
        if "after_id" in q:
            ids = ids[ids.index(q["after_id"]) + 1 :] if q["after_id"] in ids else []
        elif "before_id" in q:
            ids = ids[: ids.index(q["before_id"])] if q["before_id"] in ids else []
            ids = ids[-limit:] if len(ids) > limit else ids
        page = ids[:limit]
        return web.json_response(
            {
                "data": [self._model_object(m) for m in page],
                "has_more": len(ids) > len(page),
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            },
            dumps=_dumps,
        )

    async def _get_model(self, request: web.Request) -> web.Response:
        self._authenticate(request)
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            raise AnthropicError(404, "not_found_error", f"model: {model_id}")
        return web.json_response(self._model_object(model_id), dumps=_dumps)

    # -- /v1/messages ------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        body = request[BODY]
        if body is None and request[RAW_BODY]:
            raise _invalid("There was an error parsing the body of your request. Please ensure it is valid JSON.")
        if not isinstance(body, dict):
            raise _invalid("Input should be a valid dictionary")
        _validate(body)
        model = body["model"]
        if model not in self.models:
            raise AnthropicError(404, "not_found_error", f"model: {model}")
        limit = self._max_output(model)
        if body["max_tokens"] > limit:
            raise _invalid(
                f"max_tokens: {body['max_tokens']} > {limit}, which is the maximum allowed number of output tokens for {model}"
            )
        if "temperature" in body and "top_p" in body and not model.startswith("claude-3"):
            raise _invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")

        plan = self._queue.popleft() if self._queue else _Plan()
        stream = body.get("stream") is True
        if plan.delay:
            await asyncio.sleep(plan.delay)
            if request.transport is None or request.transport.is_closing():
                self.disconnected.set()
        if plan.cut_after is not None and not stream:
            return await self._cut_plain(request, plan, body)
        if plan.kind == "garbage":
            return await self._garbage(request, plan, stream)
        if plan.kind == "fail" and not (stream and plan.mid_stream_after is not None):
            raise AnthropicError(plan.status, plan.error_type, plan.message, plan.headers)
        message = _compose(plan, body)
        if not stream:
            return web.json_response(message, dumps=_dumps)
        return await self._stream(request, plan, message)

    async def _cut_plain(self, request: web.Request, plan: _Plan, body: dict[str, Any]) -> web.StreamResponse:
        """A non-streaming answer whose connection dies part-way (or before anything is sent)."""
        response = web.StreamResponse(status=200, headers={"request-id": request[REQUEST_ID]})
        transport = request.transport
        if plan.cut_after and transport is not None:
            data = _dumps(_compose(plan, body)).encode()
            response.content_type = "application/json"
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
        if transport is not None:
            transport.abort()
        return response

    async def _garbage(self, request: web.Request, plan: _Plan, stream: bool) -> web.StreamResponse:
        if not stream:
            return web.Response(status=200, body=plan.payload, content_type="application/json")
        response = self._sse_response(request)
        try:
            await response.prepare(request)
            await response.write(b"event: message_start\ndata: " + plan.payload + b"\n\n")
            await response.write_eof()
        except ConnectionError:
            self.disconnected.set()
        return response

    @staticmethod
    def _sse_response(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": request[REQUEST_ID],
            },
        )
        return response

    async def _stream(self, request: web.Request, plan: _Plan, message: dict[str, Any]) -> web.StreamResponse:
        events = _events(message)
        response = self._sse_response(request)
        transport = request.transport
        if plan.cut_after == 0:
            if transport is not None:
                transport.abort()
            return response
        try:
            await response.prepare(request)
            for sent, (name, data) in enumerate(events):
                if plan.cut_after is not None and sent >= plan.cut_after:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if plan.mid_stream_after is not None and sent >= plan.mid_stream_after:
                    error = _dumps(_error_body(plan.error_type, plan.message))
                    await response.write(f"event: error\ndata: {error}\n\n".encode())
                    break
                if sent and plan.event_delay:
                    await asyncio.sleep(plan.event_delay)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client went away")
                await response.write(f"event: {name}\ndata: {data}\n\n".encode())
            await response.write_eof()
        except ConnectionError:
            self.disconnected.set()
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        return response


# -- validation ------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _extra_fields(path: str, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            raise _invalid(f"{path}{key}: Extra inputs are not permitted")


def _check_range(name: str, value: Any, low: float, high: float | None) -> None:
    if not _is_number(value):
        raise _invalid(f"{name}: Input should be a valid number")
    if value < low:
        raise _invalid(f"{name}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise _invalid(f"{name}: Input should be less than or equal to {high:g}")


def _validate(body: dict[str, Any]) -> None:
    """Raise the first problem Anthropic would report for this request body."""
    for name in ("max_tokens", "messages", "model"):
        if name not in body:
            raise _invalid(f"{name}: Field required")
    _extra_fields("", body, TOP_LEVEL_FIELDS)

    if not isinstance(body["model"], str) or not body["model"]:
        raise _invalid("model: Input should be a valid string")
    if not _is_int(body["max_tokens"]):
        raise _invalid("max_tokens: Input should be a valid integer")
    if body["max_tokens"] < 0:
        raise _invalid("max_tokens: Input should be greater than or equal to 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid("stream: Input should be a valid boolean")
    if "temperature" in body:
        _check_range("temperature", body["temperature"], 0, 1)
    if "top_p" in body:
        _check_range("top_p", body["top_p"], 0, 1)
    if "top_k" in body:
        if not _is_int(body["top_k"]):
            raise _invalid("top_k: Input should be a valid integer")
        _check_range("top_k", body["top_k"], 0, None)
    if "stop_sequences" in body:
        stops = body["stop_sequences"]
        if not isinstance(stops, list):
            raise _invalid("stop_sequences: Input should be a valid list")
        for k, stop in enumerate(stops):
            if not isinstance(stop, str):
                raise _invalid(f"stop_sequences.{k}: Input should be a valid string")
    if "metadata" in body:
        metadata = body["metadata"]
        if not isinstance(metadata, dict):
            raise _invalid("metadata: Input should be a valid dictionary")
        _extra_fields("metadata.", metadata, ("user_id",))
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            raise _invalid("metadata.user_id: Input should be a valid string")
    if "service_tier" in body and body["service_tier"] not in ("auto", "standard_only"):
        raise _invalid("service_tier: Input should be 'auto' or 'standard_only'")
    if "system" in body:
        _validate_system(body["system"])
    _validate_messages(body["messages"])
    if "tools" in body:
        _validate_tools(body["tools"])
    if "tool_choice" in body:
        _validate_tool_choice(body["tool_choice"])
    if "thinking" in body:
        _validate_thinking(body)


def _validate_system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string")
    for k, block in enumerate(system):
        if not isinstance(block, dict):
            raise _invalid(f"system.{k}: Input should be a valid dictionary")
        if block.get("type") != "text":
            raise _invalid(f"system.{k}.type: Input should be 'text'")
        _extra_fields(f"system.{k}.", block, BLOCK_FIELDS["text"])
        if not isinstance(block.get("text"), str):
            raise _invalid(f"system.{k}.text: " + ("Field required" if "text" not in block else "Input should be a valid string"))
        if not block["text"]:
            raise _invalid("system: text content blocks must be non-empty")


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    previous_tool_ids: list[str] = []
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(f"{path}: Input should be a valid dictionary")
        for name in ("role", "content"):
            if name not in message:
                raise _invalid(f"{path}.{name}: Field required")
        _extra_fields(f"{path}.", message, ("role", "content"))
        role = message["role"]
        if role == "system":
            raise _invalid(
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                'parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise _invalid(f"{path}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _invalid('messages: first message must use the "user" role')
        if i > 0 and messages[i - 1].get("role") == role:
            raise _invalid(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row'
            )
        last = i == len(messages) - 1
        blocks = _validate_content(path, role, message["content"], optional=last and role == "assistant")

        if role == "user":
            results = [(j, b["tool_use_id"]) for j, b in enumerate(blocks) if b.get("type") == "tool_result"]
            for j, tool_use_id in results:
                if tool_use_id not in previous_tool_ids:
                    raise _invalid(
                        f"{path}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_use_id}. Each `tool_result` block must have a corresponding `tool_use` "
                        f"block in the previous message."
                    )
            previous_tool_ids = []
        else:
            previous_tool_ids = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            following = messages[i + 1] if not last else None
            answered = set()
            if isinstance(following, dict) and isinstance(following.get("content"), list):
                answered = {
                    b.get("tool_use_id") for b in following["content"] if isinstance(b, dict) and b.get("type") == "tool_result"
                }
            missing = [t for t in previous_tool_ids if t not in answered]
            if missing:
                raise _invalid(
                    f"{path}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    f"`tool_result` block in the next message."
                )
            if last:
                final_text = (
                    message["content"]
                    if isinstance(message["content"], str)
                    else (blocks[-1].get("text", "") if blocks and blocks[-1].get("type") == "text" else "")
                )
                if final_text and final_text != final_text.rstrip():
                    raise _invalid("messages: final assistant content cannot end with trailing whitespace")


def _validate_content(path: str, role: str, content: Any, *, optional: bool) -> list[dict[str, Any]]:
    """Check a message's content; return it as a list of blocks."""
    empty = "messages: all messages must have non-empty content except for the optional final assistant message"
    if isinstance(content, str):
        if not content and not optional:
            raise _invalid(empty)
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid(f"{path}.content: Input should be a valid string")
    if not content and not optional:
        raise _invalid(empty)
    for j, block in enumerate(content):
        _validate_block(f"{path}.content.{j}", role, block)
    return content


def _validate_block(path: str, role: str | None, block: Any, allowed: Sequence[str] = BLOCK_TYPES) -> None:
    if not isinstance(block, dict):
        raise _invalid(f"{path}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind is None:
        raise _invalid(f"{path}: Unable to extract tag using discriminator 'type'")
    if kind not in allowed:
        expected = ", ".join(f"'{t}'" for t in allowed)
        raise _invalid(f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {expected}")
    where = f"{path}.{kind}."
    _extra_fields(where, block, BLOCK_FIELDS[kind])
    if role == "user" and kind in ASSISTANT_ONLY:
        raise _invalid(f"{path}: `{kind}` blocks can only be in `assistant` messages")
    if role == "assistant" and kind in USER_ONLY:
        raise _invalid(f"{path}: `{kind}` blocks can only be in `user` messages")

    def string(name: str) -> str:
        if name not in block:
            raise _invalid(f"{where}{name}: Field required")
        if not isinstance(block[name], str):
            raise _invalid(f"{where}{name}: Input should be a valid string")
        return block[name]

    if kind == "text":
        if not string("text"):
            raise _invalid("messages: text content blocks must be non-empty")
    elif kind == "image":
        _validate_image_source(f"{where}source", block.get("source"))
    elif kind == "document":
        source = block.get("source")
        if not isinstance(source, dict):
            raise _invalid(f"{where}source: " + ("Field required" if source is None else "Input should be a valid dictionary"))
        if source.get("type") not in ("base64", "text", "url", "file", "content"):
            raise _invalid(
                f"{where}source: Input tag '{source.get('type')}' found using 'type' does not match any "
                f"of the expected tags: 'base64', 'text', 'content', 'url', 'file'"
            )
    elif kind == "tool_use":
        if not TOOL_USE_ID.match(string("id")):
            raise _invalid(f"{where}id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        string("name")
        if not isinstance(block.get("input"), dict):
            raise _invalid(
                f"{where}input: " + ("Field required" if "input" not in block else "Input should be a valid dictionary")
            )
    elif kind == "tool_result":
        string("tool_use_id")
        inner = block.get("content")
        if inner is not None and not isinstance(inner, str):
            if not isinstance(inner, list):
                raise _invalid(f"{where}content: Input should be a valid list")
            for k, item in enumerate(inner):
                _validate_block(f"{where}content.{k}", None, item, ("text", "image", "document"))
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise _invalid(f"{where}is_error: Input should be a valid boolean")
    elif kind == "thinking":
        string("thinking")
        string("signature")
    elif kind == "redacted_thinking":
        string("data")


def _validate_image_source(path: str, source: Any) -> None:
    if not isinstance(source, dict):
        raise _invalid(f"{path}: " + ("Field required" if source is None else "Input should be a valid dictionary"))
    kind = source.get("type")
    if kind == "url":
        _extra_fields(f"{path}.url.", source, ("type", "url"))
        if not isinstance(source.get("url"), str):
            raise _invalid(f"{path}.url.url: Field required")
        return
    if kind == "file":
        if not isinstance(source.get("file_id"), str):
            raise _invalid(f"{path}.file.file_id: Field required")
        return
    if kind != "base64":
        raise _invalid(
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected tags: 'base64', 'url', 'file'"
        )
    _extra_fields(f"{path}.base64.", source, ("type", "media_type", "data"))
    media_type = source.get("media_type")
    if media_type not in IMAGE_MEDIA_TYPES:
        raise _invalid(f"{path}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
    data = source.get("data")
    if not isinstance(data, str):
        raise _invalid(f"{path}.base64.data: Field required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{path}.base64.data: Invalid base64 data") from None
    if _sniff_image(raw) != media_type:
        raise _invalid(
            f"{path}.base64.data: The image was specified using the {media_type} media type, but does "
            f"not appear to be a valid {media_type} image"
        )


def _sniff_image(raw: bytes) -> str | None:
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


def _validate_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    names = []
    for k, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid(f"tools.{k}: Input should be a valid dictionary")
        kind = tool.get("type", "custom")
        if kind != "custom":
            if not isinstance(kind, str) or not SERVER_TOOL_TYPE.match(kind):
                raise _invalid(
                    f"tools.{k}: Input tag '{kind}' found using 'type' does not match any of the "
                    f"expected tags: 'custom', 'bash_20250124', 'text_editor_20250728', "
                    f"'web_search_20250305'"
                )
            names.append(tool.get("name"))
            continue
        where = f"tools.{k}.custom."
        _extra_fields(where, tool, ("type", "name", "description", "input_schema", "cache_control", "strict"))
        if "name" not in tool:
            raise _invalid(f"{where}name: Field required")
        if not isinstance(tool["name"], str) or not TOOL_NAME.match(tool["name"]):
            raise _invalid(f"{where}name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if "description" in tool and not isinstance(tool["description"], str):
            raise _invalid(f"{where}description: Input should be a valid string")
        schema = tool.get("input_schema")
        if schema is None:
            raise _invalid(f"{where}input_schema: Field required")
        if not isinstance(schema, dict):
            raise _invalid(f"{where}input_schema: Input should be a valid dictionary")
        if schema.get("type") != "object":
            raise _invalid(f"{where}input_schema.type: Input should be 'object'")
        names.append(tool["name"])
    if len(set(names)) != len(names):
        raise _invalid("tools: Tool names must be unique.")


def _validate_tool_choice(choice: Any) -> None:
    if not isinstance(choice, dict):
        raise _invalid("tool_choice: Input should be a valid dictionary")
    kind = choice.get("type")
    if kind not in TOOL_CHOICE_FIELDS:
        raise _invalid(
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the expected "
            f"tags: 'auto', 'any', 'tool', 'none'"
        )
    _extra_fields(f"tool_choice.{kind}.", choice, TOOL_CHOICE_FIELDS[kind])
    if kind == "tool" and not isinstance(choice.get("name"), str):
        raise _invalid("tool_choice.tool.name: Field required")
    if "disable_parallel_tool_use" in choice and not isinstance(choice["disable_parallel_tool_use"], bool):
        raise _invalid(f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean")


def _validate_thinking(body: dict[str, Any]) -> None:
    thinking = body["thinking"]
    if not isinstance(thinking, dict):
        raise _invalid("thinking: Input should be a valid dictionary")
    kind = thinking.get("type")
    if kind not in ("enabled", "disabled", "adaptive"):
        raise _invalid(
            f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            f"'enabled', 'disabled', 'adaptive'"
        )
    if kind != "enabled":
        _extra_fields(f"thinking.{kind}.", thinking, ("type",))
        return
    _extra_fields("thinking.enabled.", thinking, ("type", "budget_tokens"))
    budget = thinking.get("budget_tokens")
    if budget is None:
        raise _invalid("thinking.enabled.budget_tokens: Field required")
    if not _is_int(budget):
        raise _invalid("thinking.enabled.budget_tokens: Input should be a valid integer")
    if budget < 1024:
        raise _invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if body["max_tokens"] <= budget:
        raise _invalid(
            f"`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
            f"documentation at {THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    if "temperature" in body and body["temperature"] != 1:
        raise _invalid(
            f"`temperature` may only be set to 1 when thinking is enabled. Please consult our "
            f"documentation at {THINKING_DOCS}#important-considerations-when-using-extended-thinking"
        )


# -- answers ---------------------------------------------------------------------------------------


def _compose(plan: _Plan, body: Mapping[str, Any]) -> dict[str, Any]:
    """The complete ``Message`` that answers ``body`` according to ``plan``."""
    text = plan.text
    tools = list(plan.tool_use)
    stop_reason = plan.stop_reason or ("tool_use" if tools else "end_turn")
    stop_sequence = None
    output_tokens = plan.usage[1]
    hits = [(text.find(s), s) for s in body.get("stop_sequences") or () if s and s in text]
    if hits:
        index, stop_sequence = min(hits)
        text, stop_reason, tools = text[:index], "stop_sequence", []
    tokens = _tokens(text)
    if len(tokens) > body["max_tokens"]:
        text = "".join(tokens[: body["max_tokens"]])
        stop_reason, stop_sequence, tools, output_tokens = "max_tokens", None, [], body["max_tokens"]

    content: list[dict[str, Any]] = []
    thinking = body.get("thinking")
    if plan.thinking is not None and isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        signature = base64.b64encode(secrets.token_bytes(96)).decode()
        content.append({"type": "thinking", "thinking": plan.thinking, "signature": signature})
    if text:
        content.append({"type": "text", "text": text})
    content.extend({"type": "tool_use", "id": t["id"], "name": t["name"], "input": t["input"]} for t in tools)
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(plan.usage[0], output_tokens),
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _events(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The server-sent events (name, data) that stream ``message``, as Anthropic sends them."""
    events: list[tuple[str, str]] = []

    def emit(data: dict[str, Any]) -> None:
        events.append((data["type"], _dumps(data)))

    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(message["usage"]["input_tokens"], 1),
    }
    emit({"type": "message_start", "message": start})
    ping = ("ping", '{"type": "ping"}')
    if not message["content"]:
        events.append(ping)
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[dict[str, Any]]
        if kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in _tokens(block["text"])]
        elif kind == "thinking":
            opening = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": t} for t in _tokens(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": arguments[k : k + 8]} for k in range(0, len(arguments), 8)]
        emit({"type": "content_block_start", "index": index, "content_block": opening})
        if index == 0:
            events.append(ping)
        for delta in deltas:
            emit({"type": "content_block_delta", "index": index, "delta": delta})
        emit({"type": "content_block_stop", "index": index})
    emit(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }
    )
    emit({"type": "message_stop"})
    return events
