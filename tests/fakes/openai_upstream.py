"""A wire-level fake of an OpenAI-compatible inference server (vLLM by default, or OpenAI itself) for tests.

It stands in for vLLM / OpenAI / Ollama behind llm-api: real HTTP on loopback, the bodies, headers and SSE
framing those servers send, and their error bodies, so the code under test needs no patching::

    up = FakeOpenAIUpstream(models=("jan-v1-4b",), api_key="upstream-key")
    base = await up.start()                   # http://127.0.0.1:<port>; the API lives under /v1
    up.reply("Salut", usage=(12, 2))          # what the next chat completion answers
    up.fail(429, headers={"Retry-After": "3"})
    up.stall(after_chunks=2, seconds=5)       # a stream that pauses (keep-alive / read-timeout tests)
    ...
    assert up.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    await up.stop()

What is served:

* ``GET /v1/models``: vLLM's ``ModelList`` (``root``, ``parent``, ``max_model_len``, ``permission``), or
  OpenAI's plainer list with ``flavour="openai"`` (which also serves ``GET /v1/models/{id}``).
* ``POST /v1/chat/completions``, non-streamed (a ``ChatCompletion`` with vLLM's extra fields) or streamed
  (``text/event-stream``, ``data: <chunk>`` events, an optional usage chunk, ``data: [DONE]``).
* ``GET /health`` (vLLM only): 200, empty body.

Behaviour of the chat completions endpoint is queued: ``reply``, ``fail``, ``delay``, ``stall``, ``cut``,
``garbage`` and ``stream_error`` each add one entry, and each chat completion request that passes
authentication and validation takes the oldest entry (or, when the queue is empty, the default reply
``"Bonjour !"`` with usage 21 prompt + 4 completion tokens). Validation errors (400/404) do not consume
the queue: a real server answers them whatever state it is in.

Where vLLM and the brief of this fake could differ, the fake follows vLLM (0.8 - 0.10, the versions
whose error body is the flat ``{"object": "error", ...}``):

* A request without ``model`` is served with the first model, as vLLM does (``model`` is optional
  there). ``flavour="openai"`` answers 400 "you must provide a model parameter".
* With ``api_key`` set, vLLM answers a bad or missing key with 401 ``{"error": "Unauthorized"}`` (its
  authentication middleware, on paths under ``/v1`` only). ``flavour="openai"`` answers OpenAI's
  envelope (``invalid_api_key``, or the "You didn't provide an API key" message without a header).
* ``stream_options`` with ``stream`` off is a 400 (vLLM's request validator; OpenAI refuses it too).
  In vLLM an empty ``stream_options`` object means ``include_usage: true`` (its default); for OpenAI
  it means false.
* Streamed, vLLM's last choice chunk carries ``"delta": {"content": ""}`` with the ``finish_reason``
  and ``"stop_reason": null``; after tool calls it is ``"delta": {}``. OpenAI's is always ``{}``.
  Non-final choice chunks carry ``"logprobs": null, "finish_reason": null``; every chunk carries
  ``"usage": null`` only when usage was asked for, and the usage chunk (``"choices": []``) comes last,
  just before ``[DONE]``.
* A stream's headers go out at once (like uvicorn's ``StreamingResponse``); ``delay`` then holds back
  the first chunk, the way a slow prefill does.

Choices where the fake is simpler than a real server:

* Every choice of an ``n > 1`` request carries the same reply; the usage is reported as given to
  ``reply`` whatever ``n`` is.
* Text is streamed one word per chunk (a word keeps its leading space), reasoning likewise, and tool
  call arguments in fragments of at most 8 characters.
* ``reasoning`` is sent as vLLM's ``reasoning_content``; the OpenAI flavour leaves it out (OpenAI
  chat completions have no such field).
* Request headers are recorded with lower-cased names (HTTP names are case-insensitive).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes.loopback import recorded

DEFAULT_TEXT = "Bonjour !"
DEFAULT_USAGE = (21, 4)
VLLM = "vllm"
OPENAI = "openai"
FLAVOURS = (VLLM, OPENAI)
ARGUMENT_FRAGMENT = 8  # characters of tool call arguments per streamed fragment
DONE = b"data: [DONE]\n\n"
_UNSET: Any = object()
_JSON_BODY = web.RequestKey("json_body", object)  # the body parsed as JSON, or None

# vLLM's `type` for an error status (its create_error_response names them after the exception class).
VLLM_ERROR_TYPES = {
    400: "BadRequestError",
    401: "UnauthorizedError",
    403: "ForbiddenError",
    404: "NotFoundError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}
OPENAI_KEY_HINT = "You can find your API key at https://platform.openai.com/account/api-keys."
OPENAI_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
    "username) if you're accessing the API from your browser and are prompted for a username and "
    "password. You can obtain an API key from https://platform.openai.com/account/api-keys."
)
OPENAI_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)


def _dumps(obj: Any) -> bytes:
    """JSON as both servers write it: compact, UTF-8 (pydantic's ``model_dump_json`` / starlette)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _event(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _words(text: str) -> list[str]:
    """Split text into stream pieces, one word each with its leading whitespace; they join back to ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[len("".join(pieces)) :]
    return pieces + [rest] if rest else pieces


# -- queued behaviours ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    text: str | None = DEFAULT_TEXT
    finish_reason: str = "stop"
    usage: tuple[int, int] = DEFAULT_USAGE
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    reasoning: str | None = None


@dataclass(frozen=True)
class _Fail:
    status: int
    body: Any  # dict | str | bytes | None (None: the flavour's usual body for that status)
    headers: Mapping[str, str] | None


@dataclass(frozen=True)
class _Delay:
    seconds: float


@dataclass(frozen=True)
class _Stall:
    after_chunks: int
    seconds: float


@dataclass(frozen=True)
class _Cut:
    after_chunks: int


@dataclass(frozen=True)
class _Garbage:
    payload: bytes


@dataclass(frozen=True)
class _StreamError:
    after_chunks: int
    message: str
    status: int


_Behaviour = _Reply | _Fail | _Delay | _Stall | _Cut | _Garbage | _StreamError


@dataclass(frozen=True)
class _Call:
    """One chat completion being answered: what was asked and the ids it is answered with."""

    model: str
    n: int
    include_usage: bool
    id: str
    created: int


class _Refuse(asyncio.Protocol):
    """Accept a connection and reset it at once: a server that is down while its port stays the same."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close with a RST, as a crashed server's kernel would
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class FakeOpenAIUpstream:
    """An OpenAI-compatible inference server on loopback; see the module docstring."""

    def __init__(
        self,
        *,
        models: Iterable[str] = ("jan-v1-4b",),
        owned_by: str | None = None,
        api_key: str | None = None,
        flavour: str = VLLM,
        max_model_len: int = 32768,
    ) -> None:
        """``owned_by`` defaults to ``"vllm"`` (vLLM) or ``"system"`` (OpenAI); ``api_key``, when set, must
        come as ``Authorization: Bearer <api_key>``; ``max_model_len`` is what vLLM lists for each model and
        what its context-length error names."""
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        self.models = tuple(models)
        if not self.models:
            raise ValueError("at least one model is needed")
        self.flavour = flavour
        self.owned_by = owned_by if owned_by is not None else ("vllm" if flavour == VLLM else "system")
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.base_url = ""
        # every request received: {"method", "path", "headers" (lower-cased names), "json" (parsed body or None)}
        self.requests: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()  # a client closed a stream before its end
        self.active_streams = 0  # streams being written right now
        self._created = int(time.time())
        self._fingerprint = "fp_" + secrets.token_hex(5)
        self._queue: deque[_Behaviour] = deque()
        self._refusing = False
        self._stopping = False
        self._closed_by_us: set[asyncio.BaseTransport] = set()  # transports aborted by cut/refuse/stop
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on a loopback port (a free one by default); return the base URL (without ``/v1``)."""
        self._stopping = False
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        if self.flavour == OPENAI:
            app.router.add_get("/v1/models/{model:.+}", self._retrieve_model)
        else:
            app.router.add_get("/health", self._health)
        app.on_response_prepare.append(self._server_headers)
        # handler_cancellation: a client that goes away cancels its handler at once (how `disconnected` is seen)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        # Our own listening socket (not a TCPSite) so that refuse_connections() can pick the protocol per accept.
        self._server = await asyncio.get_running_loop().create_server(self._protocol, "127.0.0.1", port)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop every connection, streams included."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        self._abort_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _protocol(self) -> asyncio.BaseProtocol:
        if self._refusing or self._runner is None or self._runner.server is None:
            return _Refuse()
        return self._runner.server()

    def _abort_connections(self) -> None:
        if self._runner is None or self._runner.server is None:
            return
        for handler in self._runner.server.connections:
            if handler.transport is not None:
                self._closed_by_us.add(handler.transport)
                handler.transport.abort()

    # -- behaviour controls ----------------------------------------------------------------------------------------

    def reply(
        self,
        text: str | None = _UNSET,
        *,
        finish_reason: str | None = None,
        usage: tuple[int, int] = DEFAULT_USAGE,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        reasoning: str | None = None,
    ) -> None:
        """The next chat completion answers ``text`` (default ``"Bonjour !"``, or no content when there are
        tool calls). ``usage`` is (prompt tokens, completion tokens). ``tool_calls`` are
        ``{"name": ..., "arguments": dict or JSON string, "id": optional}``; they make ``finish_reason``
        default to ``"tool_calls"`` (else ``"stop"``). ``reasoning`` comes as ``reasoning_content``."""
        calls = tuple(tool_calls or ())
        if text is _UNSET:
            text = None if calls else DEFAULT_TEXT
        for call in calls:
            if "name" not in call:
                raise ValueError(f"a tool call needs a name: {call!r}")
        self._queue.append(
            _Reply(
                text=text,
                finish_reason=finish_reason or ("tool_calls" if calls else "stop"),
                usage=(int(usage[0]), int(usage[1])),
                tool_calls=calls,
                reasoning=reasoning,
            )
        )

    def fail(self, status: int, body: dict | str | bytes | None = None, *, headers: dict | None = None) -> None:
        """The next chat completion answers ``status`` with ``body`` (a dict is sent as JSON, a str as
        text/plain, bytes as they are). Without a body: the flavour's usual one, e.g. vLLM's
        ``{"object": "error", ..., "type": "InternalServerError", "code": 500}`` for 500, its context-length
        error for 400, OpenAI's rate-limit envelope for 429 (with ``Retry-After: 1`` unless ``headers``)."""
        self._queue.append(_Fail(status, body, dict(headers) if headers is not None else None))

    def delay(self, seconds: float) -> None:
        """The next chat completion waits before answering (streamed: before its first chunk)."""
        self._queue.append(_Delay(seconds))

    def stall(self, after_chunks: int, seconds: float) -> None:
        """The next stream pauses ``seconds`` after ``after_chunks`` events (counting the role chunk; at most
        all of them, then the pause is just before ``[DONE]``). Not streamed: like ``delay``."""
        self._queue.append(_Stall(after_chunks, seconds))

    def cut(self, after_chunks: int) -> None:
        """The next stream is closed abruptly after ``after_chunks`` events: no ``[DONE]``, no final empty
        chunk of the chunked body. Not streamed: the connection is closed without any response."""
        self._queue.append(_Cut(after_chunks))

    def garbage(self, payload: bytes = b"{not json") -> None:
        """The next chat completion answers 200 with a body that is not JSON (as ``application/json``);
        streamed: the role chunk, then ``data: <payload>``, then ``[DONE]``."""
        self._queue.append(_Garbage(payload))

    def stream_error(self, after_chunks: int = 1, message: str = "The engine failed mid-stream.", *, status: int = 400) -> None:
        """The next stream sends ``after_chunks`` events, then an error event ``data: {"error": {...}}`` (the
        only way to report a failure once the 200 is out), then ``[DONE]``, as vLLM does. Not streamed: a
        plain error response with ``status``."""
        self._queue.append(_StreamError(after_chunks, message, status))

    def refuse_connections(self) -> None:
        """Be "down": every open connection is reset and new ones are reset on accept. The port stays."""
        self._refusing = True
        self._abort_connections()

    def accept_connections(self) -> None:
        """Serve new connections again."""
        self._refusing = False

    @property
    def pending(self) -> int:
        """How many queued behaviours are still waiting for a chat completion."""
        return len(self._queue)

    # -- HTTP plumbing ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(await recorded(request))
        request[_JSON_BODY] = self.requests[-1]["json"]

        if self.api_key is not None and request.path.startswith("/v1") and request.method != "OPTIONS":
            denied = self._check_key(request.headers.get("Authorization"))
            if denied is not None:
                return denied
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._no_route(request, 404)
        except web.HTTPMethodNotAllowed:
            return self._no_route(request, 405)

    async def _server_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.flavour == VLLM:
            response.headers["Server"] = "uvicorn"
        else:
            response.headers["Server"] = "cloudflare"
            response.headers.setdefault("x-request-id", "req_" + secrets.token_hex(16))

    def _check_key(self, authorization: str | None) -> web.Response | None:
        if authorization == f"Bearer {self.api_key}":
            return None
        if self.flavour == VLLM:
            return _json(401, {"error": "Unauthorized"})
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _json(401, _openai_error(OPENAI_NO_KEY, "invalid_request_error", code=None))
        given = authorization[7:].strip()
        shown = f"{given[:3]}{'*' * max(len(given) - 7, 0)}{given[-4:]}" if len(given) > 8 else given
        return _json(
            401,
            _openai_error(
                f"Incorrect API key provided: {shown}. {OPENAI_KEY_HINT}", "invalid_request_error", code="invalid_api_key"
            ),
        )

    def _no_route(self, request: web.Request, status: int) -> web.Response:
        if self.flavour == VLLM:  # FastAPI's own bodies
            return _json(status, {"detail": "Not Found" if status == 404 else "Method Not Allowed"})
        return _json(status, _openai_error(f"Invalid URL ({request.method} {request.path})", "invalid_request_error"))

    # -- errors ----------------------------------------------------------------------------------------------------

    def _error(
        self,
        status: int,
        message: str,
        *,
        openai_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> web.Response:
        """An error response in the flavour's envelope."""
        if self.flavour == VLLM:
            return _json(status, self._vllm_error_body(status, message))
        return _json(status, _openai_error(message, openai_type, param=param, code=code))

    @staticmethod
    def _vllm_error_body(status: int, message: str) -> dict[str, Any]:
        err_type = VLLM_ERROR_TYPES.get(status) or HTTPStatus(status).phrase.replace(" ", "").replace("-", "") + "Error"
        return {"object": "error", "message": message, "type": err_type, "param": None, "code": status}

    def _model_not_found(self, model: str) -> web.Response:
        if self.flavour == VLLM:
            return self._error(404, f"The model `{model}` does not exist.")
        return self._error(404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found")

    def _fail_response(self, fail: _Fail, model: str) -> web.Response:
        headers = dict(fail.headers) if fail.headers is not None else {}
        if fail.status == 429 and fail.headers is None:
            headers["Retry-After"] = "1"
        body = fail.body
        if body is None:
            body = self._default_error_body(fail.status, model)
        if isinstance(body, bytes):
            return web.Response(status=fail.status, body=body, headers=headers)
        if isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return web.Response(status=fail.status, body=body.encode(), headers=headers)
        headers.setdefault("Content-Type", "application/json")
        return web.Response(status=fail.status, body=_dumps(body), headers=headers)

    def _default_error_body(self, status: int, model: str) -> dict[str, Any]:
        if status == 429:  # what OpenAI (or a gateway imitating it) says; vLLM itself never rate-limits
            return _openai_error(
                f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1. "
                "Please try again in 1s.",
                "requests",
                code="rate_limit_exceeded",
            )
        if status == 400:
            prompt, completion = self.max_model_len + 808, 512
            if self.flavour == VLLM:
                return self._vllm_error_body(
                    400,
                    (
                        f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the completion). "
                        "Please reduce the length of the messages or completion."
                    ),
                )
            return _openai_error(
                f"This model's maximum context length is {self.max_model_len} tokens. However, your messages "
                f"resulted in {prompt} tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                param="messages",
                code="context_length_exceeded",
            )
        if status == 404:
            return (
                self._vllm_error_body(404, f"The model `{model}` does not exist.")
                if self.flavour == VLLM
                else _openai_error(
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    code="model_not_found",
                )
            )
        if self.flavour == VLLM:
            message = {500: "Internal server error", 503: "The server is not ready to serve requests."}.get(
                status, HTTPStatus(status).phrase
            )
            return self._vllm_error_body(status, message)
        if status == 500:
            return _openai_error("The server had an error while processing your request. Sorry about that!", "server_error")
        if status == 503:
            return _openai_error("The engine is currently overloaded, please try again later", "server_error")
        return _openai_error(HTTPStatus(status).phrase, "server_error" if status >= 500 else "invalid_request_error")

    # -- endpoints -------------------------------------------------------------------------------------------------

    def _model_card(self, model: str) -> dict[str, Any]:
        if self.flavour == OPENAI:
            return {"id": model, "object": "model", "created": self._created, "owned_by": self.owned_by}
        return {
            "id": model,
            "object": "model",
            "created": self._created,
            "owned_by": self.owned_by,
            "root": model,
            "parent": None,
            "max_model_len": self.max_model_len,
            "permission": [
                {
                    "id": "modelperm-" + secrets.token_hex(16),
                    "object": "model_permission",
                    "created": self._created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }

    async def _list_models(self, request: web.Request) -> web.Response:
        return _json(200, {"object": "list", "data": [self._model_card(m) for m in self.models]})

    async def _retrieve_model(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.models:
            return self._model_not_found(model)
        return _json(200, self._model_card(model))

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = request[_JSON_BODY]
        invalid = self._validate(body)
        if invalid is not None:
            return invalid
        model = body.get("model") or self.models[0]
        if model not in self.models:
            return self._model_not_found(model)

        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        if not stream or options is None:
            include_usage = False
        elif self.flavour == VLLM:
            include_usage = bool(options.get("include_usage", True))  # vLLM's StreamOptions default
        else:
            include_usage = bool(options.get("include_usage"))
        call = _Call(
            model=model,
            n=int(body.get("n") or 1),
            include_usage=include_usage,
            id="chatcmpl-" + secrets.token_hex(16),
            created=int(time.time()),
        )

        behaviour = self._queue.popleft() if self._queue else _Reply()
        if isinstance(behaviour, _Fail):
            return self._fail_response(behaviour, model)
        reply = behaviour if isinstance(behaviour, _Reply) else _Reply()
        if stream:
            return await self._stream(request, call, reply, behaviour)

        if isinstance(behaviour, (_Delay, _Stall)):
            await asyncio.sleep(behaviour.seconds)
        elif isinstance(behaviour, _Cut):
            await self._abort(request)
            return web.Response(status=500)  # never sent: the connection is gone
        elif isinstance(behaviour, _Garbage):
            return web.Response(status=200, body=behaviour.payload, content_type="application/json")
        elif isinstance(behaviour, _StreamError):
            return self._error(
                behaviour.status,
                behaviour.message,
                openai_type="server_error" if behaviour.status >= 500 else "invalid_request_error",
            )
        return _json(200, self._completion(call, reply))

    def _validate(self, body: Any) -> web.Response | None:
        """vLLM's (pydantic/FastAPI) or OpenAI's answer to a malformed request; None when it is fine."""
        vllm = self.flavour == VLLM
        if not isinstance(body, dict):
            if vllm:
                detail = (
                    {
                        "type": "json_invalid",
                        "loc": ("body", 0),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": "Expecting value"},
                    }
                    if body is None
                    else {
                        "type": "model_attributes_type",
                        "loc": ("body",),
                        "msg": "Input should be a valid dictionary or object to extract fields from",
                        "input": body,
                    }
                )
                return self._error(400, repr([detail]))
            return self._error(400, OPENAI_BAD_JSON)
        if not vllm and not body.get("model"):
            return self._error(400, "you must provide a model parameter")
        if "messages" not in body:
            if vllm:
                return self._error(
                    400, repr([{"type": "missing", "loc": ("body", "messages"), "msg": "Field required", "input": body}])
                )
            return self._error(
                400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter"
            )
        messages = body["messages"]
        if not isinstance(messages, list):
            if vllm:
                return self._error(
                    400,
                    repr(
                        [
                            {
                                "type": "list_type",
                                "loc": ("body", "messages"),
                                "msg": "Input should be a valid list",
                                "input": messages,
                            }
                        ]
                    ),
                )
            return self._error(
                400,
                f"Invalid type for 'messages': expected an array, but got {_json_type(messages)} instead.",
                param="messages",
                code="invalid_type",
            )
        if not vllm and not messages:
            return self._error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            if vllm:
                return self._error(
                    400,
                    repr(
                        [
                            {
                                "type": "model_type",
                                "loc": ("body", "stream_options"),
                                "msg": "Input should be a valid dictionary or instance of StreamOptions",
                                "input": options,
                            }
                        ]
                    ),
                )
            return self._error(
                400,
                f"Invalid type for 'stream_options': expected an object, but got {_json_type(options)} instead.",
                param="stream_options",
                code="invalid_type",
            )
        if options is not None and not body.get("stream"):
            if vllm:
                message = "Stream options can only be defined when `stream=True`."
                return self._error(
                    400,
                    repr(
                        [
                            {
                                "type": "value_error",
                                "loc": ("body",),
                                "msg": f"Value error, {message}",
                                "input": body,
                                "ctx": {"error": message},
                            }
                        ]
                    ),
                )
            return self._error(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )
        n = body.get("n")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            if vllm:
                return self._error(400, f"n must be at least 1, got {n}.")
            return self._error(400, f"{n!r} is less than the minimum of 1 - 'n'", param="n")
        return None

    # -- answers ---------------------------------------------------------------------------------------------------

    def _tool_call_id(self) -> str:
        if self.flavour == VLLM:
            return "chatcmpl-tool-" + secrets.token_hex(16)
        return "call_" + secrets.token_urlsafe(18).replace("-", "A").replace("_", "b")[:24]

    def _tool_calls(self, reply: _Reply) -> list[dict[str, Any]]:
        """The reply's tool calls as ``{"id", "type", "function": {"name", "arguments"}}``."""
        calls = []
        for call in reply.tool_calls:
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            calls.append(
                {
                    "id": call.get("id") or self._tool_call_id(),
                    "type": "function",
                    "function": {"name": call["name"], "arguments": arguments},
                }
            )
        return calls

    def _usage(self, reply: _Reply, *, streamed: bool) -> dict[str, Any]:
        prompt, completion = reply.usage
        if self.flavour == VLLM:
            usage: dict[str, Any] = {
                "prompt_tokens": prompt,
                "total_tokens": prompt + completion,
                "completion_tokens": completion,
            }
            if not streamed:  # the usage chunk is dumped with exclude_unset, the full response is not
                usage["prompt_tokens_details"] = None
            return usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _completion(self, call: _Call, reply: _Reply) -> dict[str, Any]:
        """A non-streamed ``ChatCompletion``."""
        choices = []
        for index in range(call.n):
            tool_calls = self._tool_calls(reply)
            if self.flavour == VLLM:
                message = {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": tool_calls,
                    "reasoning_content": reply.reasoning,
                }
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": reply.finish_reason,
                        "stop_reason": None,
                    }
                )
            else:
                message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
                if tool_calls:
                    message["tool_calls"] = tool_calls
                choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": reply.finish_reason})
        head = {"id": call.id, "object": "chat.completion", "created": call.created, "model": call.model, "choices": choices}
        if self.flavour == VLLM:
            return {
                **head,
                "service_tier": None,
                "system_fingerprint": None,
                "usage": self._usage(reply, streamed=False),
                "prompt_logprobs": None,
                "kv_transfer_params": None,
            }
        return {
            **head,
            "usage": self._usage(reply, streamed=False),
            "service_tier": "default",
            "system_fingerprint": self._fingerprint,
        }

    def _chunk(self, call: _Call, choices: list[dict[str, Any]], usage: Any = _UNSET) -> bytes:
        chunk: dict[str, Any] = {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": call.model}
        if self.flavour == OPENAI:
            chunk["service_tier"] = "default"
            chunk["system_fingerprint"] = self._fingerprint
        chunk["choices"] = choices
        if usage is not _UNSET:
            chunk["usage"] = usage
        elif call.include_usage:
            chunk["usage"] = None
        return _event(chunk)

    def _choice_deltas(self, reply: _Reply) -> list[tuple[dict[str, Any], str | None]]:
        """The (delta, finish_reason) sequence of one choice, role chunk first, finish chunk last."""
        vllm = self.flavour == VLLM
        tool_calls = self._tool_calls(reply)
        role: dict[str, Any] = {"role": "assistant", "content": ""}
        if not vllm:
            if reply.text is None:
                role["content"] = None
            role["refusal"] = None
        deltas: list[tuple[dict[str, Any], str | None]] = [(role, None)]
        if vllm and reply.reasoning:
            deltas += [({"reasoning_content": piece}, None) for piece in _words(reply.reasoning)]
        deltas += [({"content": piece}, None) for piece in _words(reply.text or "")]
        for index, tool_call in enumerate(tool_calls):
            function = tool_call["function"]
            deltas.append(
                (
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": tool_call["id"],
                                "type": "function",
                                "function": {"name": function["name"], "arguments": ""},
                            }
                        ]
                    },
                    None,
                )
            )
            arguments = function["arguments"]
            for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
                fragment = arguments[start : start + ARGUMENT_FRAGMENT]
                deltas.append(({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, None))
        last = {"content": ""} if vllm and not tool_calls else {}
        deltas.append((last, reply.finish_reason))
        return deltas

    def _stream_events(self, call: _Call, reply: _Reply) -> list[bytes]:
        """Every ``data:`` event of a stream but ``[DONE]``: the choices interleaved, then usage if asked."""
        deltas = self._choice_deltas(reply)
        events = []
        for delta, finish_reason in deltas:
            for index in range(call.n):
                choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                if finish_reason is not None and self.flavour == VLLM:
                    choice["stop_reason"] = None
                events.append(self._chunk(call, [choice]))
        if call.include_usage:
            events.append(self._chunk(call, [], usage=self._usage(reply, streamed=True)))
        return events

    def _stream_error_event(self, error: _StreamError) -> bytes:
        if self.flavour == VLLM:
            return _event({"error": self._vllm_error_body(error.status, error.message)})
        return _event(_openai_error(error.message, "server_error" if error.status >= 500 else "invalid_request_error"))

    async def _stream(self, request: web.Request, call: _Call, reply: _Reply, behaviour: _Behaviour) -> web.StreamResponse:
        events = self._stream_events(call, reply)
        if isinstance(behaviour, _Garbage):
            events = events[:1] + [b"data: " + behaviour.payload + b"\n\n"]
        elif isinstance(behaviour, _StreamError):
            events = events[: behaviour.after_chunks] + [self._stream_error_event(behaviour)]
        pause_at = min(behaviour.after_chunks, len(events)) if isinstance(behaviour, (_Stall, _Cut)) else None

        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"})
        transport = request.transport
        finished = False
        self.active_streams += 1
        try:
            await response.prepare(request)
            if isinstance(behaviour, _Delay):
                await asyncio.sleep(behaviour.seconds)
            for index, event in enumerate(events):
                if index == pause_at:
                    await self._pause_or_cut(request, behaviour)
                await response.write(event)
                await asyncio.sleep(0)  # let the peer's close be noticed between chunks
            if pause_at == len(events):
                await self._pause_or_cut(request, behaviour)
            await response.write(DONE)
            await response.write_eof()
            finished = True
        except asyncio.CancelledError:  # the peer went away (aiohttp cancels the handler), or we cut it
            self._note_disconnect(transport, finished)
            raise
        except ConnectionResetError:  # a write found the connection closed; aiohttp expects this one
            self._note_disconnect(transport, finished)
        finally:
            self.active_streams -= 1
            self._closed_by_us.discard(transport)
        return response

    def _note_disconnect(self, transport: asyncio.BaseTransport | None, finished: bool) -> None:
        if not finished and transport not in self._closed_by_us and not self._stopping:
            self.disconnected.set()

    async def _pause_or_cut(self, request: web.Request, behaviour: _Behaviour) -> None:
        if isinstance(behaviour, _Stall):
            await asyncio.sleep(behaviour.seconds)
        elif isinstance(behaviour, _Cut):
            await self._abort(request)

    async def _abort(self, request: web.Request) -> None:
        """Drop the connection under the request; aiohttp then cancels the handler."""
        transport = request.transport
        if transport is not None:
            self._closed_by_us.add(transport)
            transport.abort()
        await asyncio.sleep(1)  # connection_lost cancels us long before this ends


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=_dumps(body), content_type="application/json")


def _openai_error(message: str, err_type: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


def _json_type(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a decimal", dict: "an object"}
    return "null" if value is None else names.get(type(value), "a value")
