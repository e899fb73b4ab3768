"""A wire-level fake of Jan's memory-tools service, as llm-api calls it, for tests.

Real HTTP on loopback, the paths, bodies, status codes and error bodies of memory-tools (janhq/server
``services/memory-tools``: ``handlers/memory_handler.go``, ``domain/memory/service.go`` and its
repository), so the code under test needs no patching::

    mem = FakeMemory()
    base = await mem.start()                  # http://127.0.0.1:<port>
    mem.remember(core=["likes tea"], semantic=[("Stack", "Python 3.11")], episodic=["asked about Lyon"])
    mem.fail(500)                             # the next load answers memory-tools' 500
    mem.delay(3)                              # the one after waits 3 s first
    ...
    await mem.wait_observed(1)                # observing happens in the background
    assert mem.observed[0]["messages"][0]["role"] == "user"
    await mem.stop()

What is served:

* ``POST /v1/memory/load`` ``{user_id, project_id?, conversation_id?, query, options: {max_user_items,
  max_project_items, max_episodic_items, min_similarity}}``: 200 ``{"core_memory": [...],
  "episodic_memory": [...], "semantic_memory": [...]}`` (the three lists always present, ``[]`` when empty).
* ``POST /v1/memory/observe`` ``{user_id, project_id?, conversation_id, messages: [{role, content,
  created_at}]}``: 200 ``{"message": "Memory observation completed", "status": "success"}``.
* ``GET /healthz``: 200 ``{"service": "memory-tools", "status": "healthy"}``.

Faithful to memory-tools:

* Items carry the fields memory-tools sends, in its order, a superset of what llm-api's Go client reads:
  user memory ``id, user_id, scope, key, text, score, created_at, updated_at, similarity``; project facts
  ``id, project_id, kind, title, text, confidence, source_conversation_id, created_at, updated_at,
  similarity``; episodic events ``id, user_id, project_id (only when set), conversation_id, time, text,
  kind, created_at, similarity``. Times are RFC 3339 in UTC with microseconds (Go trims trailing zeros);
  ``similarity``/``confidence`` are float32 written as Go writes them (``0.9``, and ``1`` not ``1.0``).
* Load options as ``Service.Load`` applies them: a ``max_*`` of 0 (or absent) means 20, a
  ``min_similarity`` of 0 means 0.5; a negative ``max_*`` means no limit (GORM's ``Limit(-1)``).
  Each list is the stored items with similarity >= ``min_similarity`` (user memory also needs
  ``score >= 2``, project facts ``confidence >= 0.7``, events a ``time`` within two weeks), best
  similarity first, truncated to its ``max_*``.
* But, as in memory-tools, a list that comes out *empty* falls back to everything stored of that kind,
  whatever the similarity: user memory by score then most recent, project facts by confidence, events
  most recent first, truncated to ``max_*``; their ``similarity`` then reads 1 (user memory), the fact's
  confidence (project facts) or 0.8 (events). So ``min_similarity`` filters only while at least one item
  passes it; an empty store is the only way to get an empty list.
* Project facts are looked up only when the request names a ``project_id``: without one
  ``semantic_memory`` is ``[]`` whatever is stored.
* Validation as the handlers do it, answered with ``{"error": ..., "request_id": ...}`` (400): a body
  that Go's ``json.Decoder`` cannot decode into the request struct (not JSON, empty, NaN, a field of the
  wrong type such as ``"max_user_items": 5.0`` or a ``created_at`` that is not RFC 3339) is
  "invalid request body"; then load needs ``user_id`` ("user_id is required") and ``query``, observe
  ``user_id``, ``conversation_id`` and a non-empty ``messages`` ("messages are required"). Field names
  match case-insensitively, unknown fields are ignored, ``null`` is as good as absent and anything after
  the first JSON value is ignored, as with Go. Another method on these paths is 405 ``{"error": "method
  not allowed"}``; another path is net/http's 404 ``404 page not found`` (text/plain).
* Every answer carries ``X-Request-ID`` (the request's own, else a new UUID), which the error bodies
  repeat as ``request_id``. JSON is written as Go's ``json.Encoder`` writes it: compact, ``<``, ``>``,
  ``&`` escaped as ``\\u003c`` etc., a final newline.
* With ``api_key`` set (memory-tools' ``MEMORY_TOOLS_API_KEY``; llm-api's Go client sends none, so it is
  off by default), every path but ``/healthz`` needs ``Authorization: Bearer <key>``, refused with
  net/http's text/plain 401 ("Missing authorization header", "Invalid authorization header format",
  "Invalid API key").

Where the fake is simpler:

* There is no embedding model: a stored item's similarity is whatever ``remember`` gave it (0.9 unless
  ``similarity=`` or the item's own ``"similarity"`` says otherwise), the same for every query.
* ``remember`` replaces the whole store, and what is stored is every user's and every project's: items
  are answered with the request's ``user_id`` (and ``project_id``). Observing stores nothing; it is
  recorded in ``observed`` (the body of each observe call that passed validation, recorded on arrival,
  even when a queued fault then answers it).
* Only load, observe and healthz are served (not stats, export, upsert or delete).
* Faults are queued per endpoint (``on="load"``, the default, or ``"observe"``): each call that passes
  authentication and validation takes the oldest entry of its endpoint. ``fail`` answers a status (with
  memory-tools' own body for it unless one is given: its 500 "failed to load memories" / "failed to
  observe memories", net/http's text/plain 504 "Request timeout" of its timeout middleware, ...);
  ``delay`` waits, then answers normally. Validation and authentication errors do not consume the queue.
* Request headers are recorded with lower-cased names.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes.loopback import listen, recorded

DEFAULT_SIMILARITY = 0.9
DEFAULT_MAX_ITEMS = 20  # Service.Load: a max_* of 0 means 20
DEFAULT_MIN_SIMILARITY = 0.5  # ... and a min_similarity of 0 means 0.5
MIN_USER_SCORE = 2  # SearchUserMemory: score >= 2
MIN_FACT_CONFIDENCE = 0.7  # SearchProjectFacts: confidence >= 0.7
EPISODIC_WINDOW = timedelta(weeks=2)  # SearchEpisodicEvents: time > NOW() - INTERVAL '2 weeks'
LOAD = "load"
OBSERVE = "observe"
_ENDPOINTS = (LOAD, OBSERVE)
_INT64 = (-(2**63), 2**63 - 1)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_UNSET: Any = object()


# -- Go's encoding/json, as far as this service shows it ----------------------------------------------------------


def go_json(obj: Any) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, HTML characters escaped, a final newline."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode() + b"\n"


def go_float32(value: float) -> float | int:
    """``value`` as a Go float32 is written in JSON: the shortest decimal that reads back as the same float32,
    and an integral value without a fraction (``1``, not ``1.0``)."""
    single = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        candidate = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == single:
            break
    return int(candidate) if candidate.is_integer() and abs(candidate) < 1e21 else candidate


def go_time(moment: datetime) -> str:
    """RFC 3339 in UTC as Go writes a ``time.Time`` read from PostgreSQL (microseconds, trailing zeros trimmed)."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


class _Undecodable(Exception):
    """What Go's json.Decoder would refuse to decode into the request struct."""


def _decode(raw: bytes) -> Any:
    """The first JSON value of the body, as Go's ``Decoder.Decode`` reads it: whatever follows is ignored,
    NaN/Infinity are syntax errors. Objects are lists of (key, value) pairs (keys may repeat, and match
    case-insensitively)."""
    text = raw.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip(" \t\r\n"))
    if start == len(text):
        raise _Undecodable("EOF")

    def no_constants(name: str) -> Any:
        raise _Undecodable(f"invalid character {name[0]!r} looking for beginning of value")

    decoder = json.JSONDecoder(object_pairs_hook=lambda pairs: _Object(pairs), parse_constant=no_constants)
    try:
        value, _ = decoder.raw_decode(text, start)
    except ValueError as error:
        raise _Undecodable(str(error)) from None
    return value


class _Object(list):
    """A decoded JSON object: its (key, value) pairs in order."""

    def fields(self, name: str) -> list[Any]:
        """Every value given for ``name`` (matched case-insensitively, as Go does)."""
        return [value for key, value in self if key.casefold() == name.casefold()]


def _plain(value: Any) -> Any:
    """A decoded value with its objects as dicts (the last of repeated keys wins), for recording."""
    if isinstance(value, _Object):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# Request structs of memory-tools (domain/memory/models.go): field name -> Go type.
_STRING, _INT, _FLOAT32, _BOOL, _TIME, _ANY_OBJECT = "string", "int", "float32", "bool", "time", "object"
_LOAD_OPTIONS = {
    "augment_with_memory": _BOOL,
    "max_user_items": _INT,
    "max_project_items": _INT,
    "max_episodic_items": _INT,
    "min_similarity": _FLOAT32,
}
_LOAD_REQUEST = {
    "user_id": _STRING,
    "project_id": _STRING,
    "conversation_id": _STRING,
    "query": _STRING,
    "options": _LOAD_OPTIONS,
}
_CONVERSATION_ITEM = {
    "id": _STRING,
    "conversation_id": _STRING,
    "role": _STRING,
    "content": _STRING,
    "tool_calls": _STRING,
    "created_at": _TIME,
}
_TOOL_CALL = {"name": _STRING, "arguments": _ANY_OBJECT, "result": _STRING}
_OBSERVE_REQUEST = {
    "user_id": _STRING,
    "project_id": _STRING,
    "conversation_id": _STRING,
    "messages": [_CONVERSATION_ITEM],
    "tool_calls": [_TOOL_CALL],
}


def _check(value: Any, go_type: Any) -> None:
    """Raise _Undecodable when Go could not unmarshal ``value`` into ``go_type`` (null always fits)."""
    if value is None:
        return
    if isinstance(go_type, dict):
        if not isinstance(value, _Object):
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a struct")
        for name, field_type in go_type.items():
            for item in value.fields(name):
                _check(item, field_type)
    elif isinstance(go_type, list):
        if not isinstance(value, list) or isinstance(value, _Object):
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a slice")
        for item in value:
            _check(item, go_type[0])
    elif go_type == _STRING:
        if not isinstance(value, str):
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a string")
    elif go_type == _BOOL:
        if not isinstance(value, bool):
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a bool")
    elif go_type == _INT:
        if isinstance(value, bool) or not isinstance(value, int) or not _INT64[0] <= value <= _INT64[1]:
            raise _Undecodable(f"cannot unmarshal {_kind(value)} {value!r} into an int")
    elif go_type == _FLOAT32:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > 3.4028234663852886e38:
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a float32")
    elif go_type == _TIME:
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise _Undecodable(f"parsing time {value!r} as RFC 3339")
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Undecodable(f"parsing time {value!r}: out of range") from None
    elif go_type == _ANY_OBJECT:
        if not isinstance(value, _Object):
            raise _Undecodable(f"cannot unmarshal {_kind(value)} into a map")


def _kind(value: Any) -> str:
    if isinstance(value, _Object):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "value"


def _field(body: Any, name: str, default: Any = None) -> Any:
    """The decoded value of a field (the last one given, as Go keeps), or ``default`` when absent or null."""
    if not isinstance(body, _Object):
        return default
    given = [value for value in body.fields(name) if value is not None]
    return given[-1] if given else default


# -- stored memory ---------------------------------------------------------------------------------------------------


@dataclass
class _UserItem:
    id: str
    scope: str
    key: str
    text: str
    score: int
    similarity: float
    created_at: datetime
    updated_at: datetime


@dataclass
class _Fact:
    id: str
    kind: str
    title: str
    text: str
    confidence: float
    similarity: float
    source_conversation_id: str
    created_at: datetime
    updated_at: datetime


@dataclass
class _Event:
    id: str
    conversation_id: str
    time: datetime
    text: str
    kind: str
    similarity: float
    created_at: datetime


@dataclass(frozen=True)
class _Fail:
    status: int
    body: Any  # dict | list | str | bytes | None (None: memory-tools' own body for that status)
    headers: Mapping[str, str] | None


@dataclass(frozen=True)
class _Delay:
    seconds: float


def _limit(items: list, limit: int) -> list:
    return items if limit < 0 else items[:limit]


class FakeMemory:
    """Jan's memory-tools on loopback; see the module docstring."""

    def __init__(self, *, api_key: str | None = None) -> None:
        """``api_key``, when set, must come as ``Authorization: Bearer <api_key>`` (not on ``/healthz``)."""
        self.api_key = api_key
        self.base_url = ""
        # every request received: {"method", "path", "headers" (lower-cased names), "json" (parsed body or None)}
        self.requests: list[dict[str, Any]] = []
        self.observed: list[dict[str, Any]] = []  # bodies of the observe calls that passed validation
        self.core: list[_UserItem] = []
        self.semantic: list[_Fact] = []
        self.episodic: list[_Event] = []
        self._queues: dict[str, deque[_Fail | _Delay]] = {endpoint: deque() for endpoint in _ENDPOINTS}
        self._observed_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on a loopback port (a free one by default); return the base URL."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/v1/memory/load", self._load)
        app.router.add_route("*", "/v1/memory/observe", self._observe)
        app.router.add_route("*", "/healthz", self._health)
        # handler_cancellation: a client that gives up cancels its handler (and its delay) at once
        self._runner, self.base_url = await listen(app, port, handler_cancellation=True, shutdown_timeout=0.5)
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------------------------------------------

    def remember(
        self,
        *,
        core: Iterable[str | Mapping[str, Any]] = (),
        semantic: Iterable[tuple[str, str] | Mapping[str, Any]] = (),
        episodic: Iterable[str | Mapping[str, Any]] = (),
        similarity: float = DEFAULT_SIMILARITY,
    ) -> None:
        """Replace the stored memory (what every load searches).

        ``core``: user memory, a text or a mapping with ``text`` and any of ``scope`` ("core"), ``key`` (""),
        ``score`` (3, "medium"), ``similarity``, ``id``. ``semantic``: project facts, ``(title, text)`` or a
        mapping with ``title``, ``text`` and any of ``kind`` ("context"), ``confidence`` (0.8),
        ``similarity``, ``source_conversation_id``, ``id``. ``episodic``: events, a text or a mapping with
        ``text`` and any of ``kind`` ("interaction"), ``similarity``, ``time`` (a datetime), ``conversation_id``,
        ``id``. ``similarity`` is that of every item that does not give its own. Items are stored newest
        first in the order given (what the fallback orders by when scores tie).
        """
        now = datetime.now(UTC)
        self.core = []
        for index, item in enumerate(core):
            spec = {"text": item} if isinstance(item, str) else dict(item)
            moment = now - timedelta(milliseconds=index)
            self.core.append(
                _UserItem(
                    id=str(spec.get("id") or uuid.uuid4()),
                    scope=spec.get("scope", "core"),
                    key=spec.get("key", ""),
                    text=spec["text"],
                    score=int(spec.get("score", 3)),
                    similarity=spec.get("similarity", similarity),
                    created_at=moment,
                    updated_at=moment,
                )
            )
        self.semantic = []
        for index, item in enumerate(semantic):
            spec = dict(zip(("title", "text"), item, strict=False)) if isinstance(item, tuple) else dict(item)
            moment = now - timedelta(milliseconds=index)
            self.semantic.append(
                _Fact(
                    id=str(spec.get("id") or uuid.uuid4()),
                    kind=spec.get("kind", "context"),
                    title=spec.get("title", ""),
                    text=spec["text"],
                    confidence=spec.get("confidence", 0.8),
                    similarity=spec.get("similarity", similarity),
                    source_conversation_id=spec.get("source_conversation_id", ""),
                    created_at=moment,
                    updated_at=moment,
                )
            )
        self.episodic = []
        for index, item in enumerate(episodic):
            spec = {"text": item} if isinstance(item, str) else dict(item)
            moment = spec.get("time") or now - timedelta(seconds=index)
            self.episodic.append(
                _Event(
                    id=str(spec.get("id") or uuid.uuid4()),
                    conversation_id=spec.get("conversation_id", ""),
                    time=moment,
                    text=spec["text"],
                    kind=spec.get("kind", "interaction"),
                    similarity=spec.get("similarity", similarity),
                    created_at=moment,
                )
            )

    def fail(self, status: int, body: Any = None, *, headers: Mapping[str, str] | None = None, on: str = LOAD) -> None:
        """The next ``on`` call ("load" or "observe") answers ``status`` with ``body`` (a dict or list is sent
        as JSON, a str as text/plain, bytes as they are); without one, memory-tools' own body for it."""
        self._queue(on).append(_Fail(status, body, dict(headers) if headers is not None else None))

    def delay(self, seconds: float, *, on: str = LOAD) -> None:
        """The next ``on`` call ("load" or "observe") waits ``seconds``, then answers normally."""
        self._queue(on).append(_Delay(seconds))

    @property
    def pending(self) -> int:
        """How many queued faults (of both endpoints) are still waiting for a call."""
        return sum(len(queue) for queue in self._queues.values())

    async def wait_observed(self, count: int = 1, timeout: float = 2.0) -> list[dict[str, Any]]:
        """Wait until ``count`` observe calls arrived (raise asyncio.TimeoutError after ``timeout`` s);
        return ``observed``."""

        async def arrived() -> None:
            while len(self.observed) < count:
                self._observed_changed.clear()
                await self._observed_changed.wait()

        await asyncio.wait_for(arrived(), timeout)
        return self.observed

    def _queue(self, endpoint: str) -> deque[_Fail | _Delay]:
        if endpoint not in self._queues:
            raise ValueError(f"on must be one of {_ENDPOINTS}, not {endpoint!r}")
        return self._queues[endpoint]

    # -- HTTP plumbing ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(await recorded(request))

        # RequestIDMiddleware (outermost), then AuthMiddleware, then the mux.
        request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
        request["request_id"] = request_id
        response = self._check_key(request)
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as error:
                if error.status != 404:
                    raise
                response = _text(404, "404 page not found")  # net/http's ServeMux
        response.headers["X-Request-ID"] = request_id
        return response

    def _check_key(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or request.path == "/healthz":
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return _text(401, "Missing authorization header")
        scheme, space, token = header.partition(" ")
        if not space or scheme != "Bearer":
            return _text(401, "Invalid authorization header format")
        if token != self.api_key:
            return _text(401, "Invalid API key")
        return None

    @staticmethod
    def _json(request: web.Request, status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=go_json(body), headers={"Content-Type": "application/json"})

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        return self._json(request, status, {"error": message, "request_id": request["request_id"]})

    async def _decoded(self, request: web.Request, struct_type: dict) -> Any:
        """The body decoded into ``struct_type`` as Go would, or None when it cannot be."""
        try:
            body = _decode(await request.read())
            _check(body, struct_type)
        except _Undecodable:
            return None
        return body if body is not None else _Object()

    async def _take(self, request: web.Request, endpoint: str) -> web.Response | None:
        """Apply the oldest queued fault of ``endpoint``: a response to send instead, or None."""
        queue = self._queues[endpoint]
        if not queue:
            return None
        fault = queue.popleft()
        if isinstance(fault, _Delay):
            await asyncio.sleep(fault.seconds)
            return None
        return self._fail_response(request, fault, endpoint)

    def _fail_response(self, request: web.Request, fault: _Fail, endpoint: str) -> web.Response:
        headers = dict(fault.headers or {})
        body = fault.body
        if body is None:
            return self._default_failure(request, fault.status, endpoint, headers)
        if isinstance(body, bytes):
            return web.Response(status=fault.status, body=body, headers=headers)
        if isinstance(body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return web.Response(status=fault.status, body=body.encode(), headers=headers)
        headers.setdefault("Content-Type", "application/json")
        return web.Response(status=fault.status, body=go_json(body), headers=headers)

    def _default_failure(self, request: web.Request, status: int, endpoint: str, headers: dict[str, str]) -> web.Response:
        if status == 504:  # TimeoutMiddleware
            response = _text(504, "Request timeout")
        elif status == 401:  # AuthMiddleware
            response = _text(401, "Invalid API key")
        elif status == 404:
            response = _text(404, "404 page not found")
        else:
            message = {
                400: "invalid request body",
                405: "method not allowed",
                500: "failed to load memories" if endpoint == LOAD else "failed to observe memories",
            }.get(status) or HTTPStatus(status).phrase.lower()
            response = self._error(request, status, message)
        response.headers.update(headers)
        return response

    # -- endpoints -------------------------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return self._json(request, 200, {"service": "memory-tools", "status": "healthy"})

    async def _load(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._error(request, 405, "method not allowed")
        body = await self._decoded(request, _LOAD_REQUEST)
        if body is None:
            return self._error(request, 400, "invalid request body")
        user_id, query = _field(body, "user_id", ""), _field(body, "query", "")
        if not user_id:
            return self._error(request, 400, "user_id is required")
        if not query:
            return self._error(request, 400, "query is required")
        fault = await self._take(request, LOAD)
        if fault is not None:
            return fault

        options = _field(body, "options", _Object())
        max_user = _field(options, "max_user_items", 0) or DEFAULT_MAX_ITEMS
        max_project = _field(options, "max_project_items", 0) or DEFAULT_MAX_ITEMS
        max_episodic = _field(options, "max_episodic_items", 0) or DEFAULT_MAX_ITEMS
        min_similarity = go_float32(_field(options, "min_similarity", 0)) or DEFAULT_MIN_SIMILARITY
        project_id = _field(body, "project_id", "")
        return self._json(
            request,
            200,
            {
                "core_memory": self._core(user_id, max_user, min_similarity),
                "episodic_memory": self._episodes(user_id, project_id, max_episodic, min_similarity),
                "semantic_memory": self._facts(project_id, max_project, min_similarity) if project_id else [],
            },
        )

    def _core(self, user_id: str, limit: int, min_similarity: float) -> list[dict[str, Any]]:
        found = [
            (item, go_float32(item.similarity))
            for item in self.core
            if item.score >= MIN_USER_SCORE and go_float32(item.similarity) >= min_similarity
        ]
        found.sort(key=lambda pair: -pair[1])
        found = _limit(found, limit)
        if not found:  # Service.Load: nothing similar enough, so all of the user's memory
            everything = sorted(self.core, key=lambda item: (-item.score, -item.updated_at.timestamp()))
            found = [(item, None) for item in (everything[:limit] if limit > 0 else everything)]
        return [
            {
                "id": item.id,
                "user_id": user_id,
                "scope": item.scope,
                "key": item.key,
                "text": item.text,
                "score": item.score,
                "created_at": go_time(item.created_at),
                "updated_at": go_time(item.updated_at),
                "similarity": 1 if similarity is None else similarity,
            }
            for item, similarity in found
        ]

    def _facts(self, project_id: str, limit: int, min_similarity: float) -> list[dict[str, Any]]:
        found = [
            (fact, go_float32(fact.similarity))
            for fact in self.semantic
            if go_float32(fact.confidence) >= go_float32(MIN_FACT_CONFIDENCE) and go_float32(fact.similarity) >= min_similarity
        ]
        found.sort(key=lambda pair: -pair[1])
        found = _limit(found, limit)
        if not found:  # all of the project's facts
            everything = sorted(self.semantic, key=lambda fact: (-fact.confidence, -fact.updated_at.timestamp()))
            found = [(fact, None) for fact in (everything[:limit] if limit > 0 else everything)]
        return [
            {
                "id": fact.id,
                "project_id": project_id,
                "kind": fact.kind,
                "title": fact.title,
                "text": fact.text,
                "confidence": go_float32(fact.confidence),
                "source_conversation_id": fact.source_conversation_id,
                "created_at": go_time(fact.created_at),
                "updated_at": go_time(fact.updated_at),
                "similarity": go_float32(fact.confidence) if similarity is None else similarity,
            }
            for fact, similarity in found
        ]

    def _episodes(self, user_id: str, project_id: str, limit: int, min_similarity: float) -> list[dict[str, Any]]:
        recent = datetime.now(UTC) - EPISODIC_WINDOW
        found = [
            (event, go_float32(event.similarity))
            for event in self.episodic
            if event.time > recent and go_float32(event.similarity) >= min_similarity
        ]
        found.sort(key=lambda pair: -pair[1])
        found = _limit(found, limit)
        if not found:  # the user's most recent events
            everything = sorted(self.episodic, key=lambda event: -event.time.timestamp())
            found = [(event, None) for event in _limit(everything, limit)]
        answer = []
        for event, similarity in found:
            item: dict[str, Any] = {"id": event.id, "user_id": user_id}
            if project_id:
                item["project_id"] = project_id
            item.update(
                {
                    "conversation_id": event.conversation_id,
                    "time": go_time(event.time),
                    "text": event.text,
                    "kind": event.kind,
                    "created_at": go_time(event.created_at),
                    "similarity": 0.8 if similarity is None else similarity,
                }
            )
            answer.append(item)
        return answer

    async def _observe(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return self._error(request, 405, "method not allowed")
        body = await self._decoded(request, _OBSERVE_REQUEST)
        if body is None:
            return self._error(request, 400, "invalid request body")
        if not _field(body, "user_id", ""):
            return self._error(request, 400, "user_id is required")
        if not _field(body, "conversation_id", ""):
            return self._error(request, 400, "conversation_id is required")
        if not _field(body, "messages", []):
            return self._error(request, 400, "messages are required")
        self.observed.append(_plain(body))
        self._observed_changed.set()
        fault = await self._take(request, OBSERVE)
        if fault is not None:
            return fault
        return self._json(request, 200, {"message": "Memory observation completed", "status": "success"})


def _text(status: int, message: str) -> web.Response:
    """net/http's ``http.Error``: text/plain, nosniff, the message and a newline."""
    return web.Response(
        status=status,
        body=(message + "\n").encode(),
        headers={"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"},
    )
